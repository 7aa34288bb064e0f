"""A Packer configuration after evaluation, the same for HCL2 and legacy JSON input.

``Section`` is a block (or a JSON object) with evaluated attributes, each with where it was written and, when
its expression was a bare variable reference, which variable (so an empty value can become a ``<placeholder>``
named after it). A ``Build`` lists its sources and, per source, its provisioners: in HCL2 they are evaluated
for each source, because ``source.name`` may appear in them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aibx.diagnostics import Diagnostic
from aibx.translators.report import NOWHERE, Location


def text_of(value: Any) -> str | None:
    """The value if it is a string (a known one), else None."""
    return value if isinstance(value, str) else None


def truthy(value: Any) -> bool:
    """A boolean setting as Packer reads it: JSON templates write "true" or "1" as strings."""
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "1"))


@dataclass
class Attr:
    value: Any
    location: Location = NOWHERE
    # "var.NAME" when the expression was just that variable
    origin: str | None = None


@dataclass
class Section:
    type: str
    labels: list[str] = field(default_factory=list)
    attrs: dict[str, Attr] = field(default_factory=dict)
    blocks: list[Section] = field(default_factory=list)
    location: Location = NOWHERE
    # comment lines written directly above the block (without the comment markers)
    comments: list[str] = field(default_factory=list)
    # position among its siblings of the same kind (provisioners), for reports
    index: int | None = None

    def get(self, name: str) -> Attr | None:
        return self.attrs.get(name)

    def value(self, name: str, default: Any = None) -> Any:
        attr = self.attrs.get(name)
        return default if attr is None else attr.value

    def where(self, name: str) -> Location:
        attr = self.attrs.get(name)
        return attr.location if attr is not None else self.location

    def sections(self, name: str) -> list[Section]:
        """Nested blocks called ``name``; in JSON, an object (or a list of objects) under that key."""
        found = [b for b in self.blocks if b.type == name]
        attr = self.attrs.get(name)
        if attr is not None:
            items = attr.value if isinstance(attr.value, list) else [attr.value]
            for item in items:
                if isinstance(item, dict):
                    found.append(
                        Section(
                            name,
                            attrs={k: Attr(v, attr.location) for k, v in item.items()},
                            location=attr.location,
                        )
                    )
        return found


@dataclass
class SourceRef:
    """One source of a build: its type and name (as the build knows it) and its evaluated settings."""

    type: str
    name: str
    section: Section
    location: Location = NOWHERE

    @property
    def full_name(self) -> str:
        return f"{self.type}.{self.name}"


@dataclass
class Build:
    name: str
    sources: list[SourceRef]
    provisioners: Callable[[SourceRef], list[Section]]
    post_processors: list[Section] = field(default_factory=list)
    error_cleanup: Section | None = None
    location: Location = NOWHERE
    # settings of the build that have no place in a translation, reported once per build
    other: list[Section] = field(default_factory=list)


@dataclass
class PackerConfig:
    path: str
    format: str  # "hcl2" or "json"
    root: str = "."  # path.root / template_dir
    builds: list[Build] = field(default_factory=list)
    # top-level blocks besides variables, locals, sources and builds (packer {}, data, hcp_packer_registry ...)
    other: list[Section] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    # each secret value and where it came from: the sensitive variable or local (``creds.password`` inside one)
    secret_names: dict[str, str] = field(default_factory=dict)
    # names of the variables and locals declared sensitive, with or without a value
    sensitive_names: set[str] = field(default_factory=set)
    # where each of them is declared (HCL2)
    sensitive_locations: dict[str, Location] = field(default_factory=dict)
    # each declared variable's value (after defaults, variable files and --var), for writers that declare them
    variables: dict[str, Any] = field(default_factory=dict)
    # secrets that are values from the environment (env(), {{env}}, PKR_VAR_NAME): the names they are registered
    # under (the environment variable's), so the translation says so; their locations are in sensitive_locations
    environment_sources: set[str] = field(default_factory=set)
    diagnostics: list[Diagnostic] = field(default_factory=list)
