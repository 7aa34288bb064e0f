"""The values a Bicep evaluation passes around: a value with where its parts were written, a parameter value
given from outside the file, another resource seen from the image template."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field

from aibx.document import Unresolved
from aibx.jsonc import JsonPath

MAX_MODULE_DEPTH = 16
MAX_LOOP_ITEMS = 10_000
MAX_LOCAL_FILE = 4 * 1024 * 1024
FALLBACK = "`az bicep build` turns the file into an ARM template, which aibx reads as JSON"
ALLOW_FLAG = "--allow-local-files"

# where each part of a value was written: relative JSON path -> character offset, for values and for keys
# a spot is an offset in the file being evaluated, or (file, line, column) in another one (a .bicepparam file, a
# module's caller, a JSON parameters file)
Spot = int | tuple[str, int, int]
Spots = dict[JsonPath, Spot]


@dataclass
class Val:
    value: object
    spots: Spots = field(default_factory=dict)
    keys: Spots = field(default_factory=dict)
    # property names that could not be computed (JSON path -> the Unresolved standing in for the name)
    unknown_keys: dict[JsonPath, Unresolved] = field(default_factory=dict)


class EvalError(Exception):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


@dataclass
class Supplied:
    value: object
    file: str
    line: int = 0
    column: int = 0
    spots: Spots = field(default_factory=dict)  # where its parts were written: (file, line, column)


class Runtime:
    """Another resource (or a module, or a resource group) as the image template sees it: what is known offline
    (its ID, name, type, what its body says); anything else is a runtime property only Azure knows."""

    def __init__(
        self,
        known: dict[str, object],
        what: str,
        resolver: Callable[[str], object] | None = None,
    ) -> None:
        self.known = known
        self.what = what
        self.resolver = resolver  # looks up a name not in ``known`` (a body evaluated on demand, an output)

    def plain(self) -> object:
        """The value an ARM function or the resource body receives: a resource's ID (its name for a module)."""
        ident = self.known.get("id", self.known.get("name"))
        return ident if ident is not None else Unresolved(self.what, f"{self.what} has no ID aibx can tell")

    def member(self, name: str) -> object:
        key = next((k for k in self.known if k.lower() == name.lower()), None)
        if key is not None:
            return self.known[key]
        if self.resolver is not None:
            value = self.resolver(name)
            if value is not _MISSING:
                return value
        return Unresolved(f"{self.what}.{name}", f"'{name}' of {self.what} is only known to Azure at deployment")


class RuntimeObject(Runtime):
    """An object written in another resource's body: what it does not write is only known at deployment."""

    def plain(self) -> object:
        return {k: v.plain() if isinstance(v, Runtime) else _plain_list(v) for k, v in self.known.items()}


def _plain_list(value: object) -> object:
    if isinstance(value, list):
        return [v.plain() if isinstance(v, Runtime) else _plain_list(v) for v in value]
    return value


_MISSING = object()
MISSING = _MISSING


def base64_of(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
