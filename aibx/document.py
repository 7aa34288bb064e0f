"""A loaded image-template document: the raw resource, where it came from, and what could not be resolved."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from aibx.diagnostics import Diagnostic, Severity, format_path, make
from aibx.jsonc import JsonPath, SourceMap


@dataclass(frozen=True)
class Unresolved:
    """A value that could not be computed before deployment: an ARM expression that needs Azure
    (``reference()``, a parameter without a value), or a ``<placeholder>`` nobody substituted.

    It stays in the document where the value would be; validation reports it, and later verbs refuse only
    the steps that need it.
    """

    text: str
    reason: str
    # True when a diagnostic already explains it (an invalid expression is AIB006, not also AIB005)
    reported: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        return self.text


class OpenValue(str):
    """The text ``<name>`` standing for a value nobody gave (a string parameter without a value, when a
    translation asks for them open: loader.LoadOptions.open_parameters). Functions that only build text carry it
    along; any other function of it (a comparison, ``substring()``, ``length()``, a condition) is Unresolved, so
    no branch is chosen and no text is cut on a value that is not there."""


@dataclass
class Document:
    """One image-template resource as written, after parameters and expressions were applied."""

    file: str
    resource: dict[str, object]
    source_map: SourceMap
    # where the resource sits in the file: () for a bare resource, ('resources', 0) in an ARM deployment
    prefix: JsonPath = ()
    name: str | None = None
    # the key of the resource in a languageVersion 2.0 template ("resources": {"NAME": {...}})
    symbolic_name: str | None = None
    api_version: str | None = None
    # api_version as written, when it was not one we know (validation then assumes the newest)
    api_version_written: object = None
    # JSON paths (relative to the resource) whose value is Unresolved
    unresolved: dict[JsonPath, Unresolved] = field(default_factory=dict)
    # values of secure parameters: never to be printed, logged or reported
    secrets: list[str] = field(default_factory=list)
    # each secret value and where it came from: the parameter's name, or a path inside a secureObject
    # ("creds.password", "keys[0]"); translations write a reference to it instead of the value
    secret_names: dict[str, str] = field(default_factory=dict)
    # names of the secureString / secureObject parameters the template declares
    secure_parameters: set[str] = field(default_factory=set)
    # True for a resource of an ARM deployment template (its expressions were evaluated), False for a bare
    # resource (sent to AIB as written)
    in_deployment: bool = False
    # False when the resource's "condition" (or its nested deployment's) is false: ARM does not deploy it
    deployed: bool = True
    # model fields the AIB format has no place for, by the path of their step (relative to the resource): the
    # Packer semantics a translated configuration keeps for the engine (aibx.packer_input), e.g. expect_disconnect
    engine_hints: dict[JsonPath, dict[str, object]] = field(default_factory=dict)

    def full_path(self, path: JsonPath) -> JsonPath:
        return (*self.prefix, *path)

    def diagnostic(
        self,
        code: str,
        message: str,
        path: JsonPath = (),
        *,
        key: bool = False,
        severity: Severity | None = None,
    ) -> Diagnostic:
        """A diagnostic pointing at ``path`` (relative to the resource), with line, column and JSON path."""
        full = self.full_path(path)
        line, column = self.source_map.locate(full, key=key)
        for secret in self.secrets:
            message = message.replace(secret, "***")
        return make(
            code,
            message,
            file=self.file,
            line=line,
            column=column,
            json_path=format_path(full),
            severity=severity,
        )


def find_unresolved(value: object, path: JsonPath = ()) -> Iterator[tuple[JsonPath, Unresolved]]:
    """Every unknown value in a JSON tree, with its path."""
    if isinstance(value, Unresolved):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from find_unresolved(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from find_unresolved(v, (*path, i))
