"""The template model as Bicep: ``aibx translate ... --to bicep``.

The image template goes through the same steps as ``--to aib --arm`` (``translators/aib.py``: the resource from the
model, pruned to the apiVersion, every secret replaced by a secure parameter), and is then written as Bicep:

* each open value and each secret is a ``param`` (``@secure()`` for a secret, ``@description`` for where it came
  from); a Packer variable whose value the template holds whole is a ``param`` with that value as its default;
* the user-assigned identity and the gallery image definition are ``existing`` resources named by ``param``s, and
  the template refers to them (``identity.id``, ``galleryImage.id``);
* a ``<placeholder>`` or an ARM ``[parameters('x')]`` the model could not resolve becomes the param ``x``, and
  text around it an interpolation ``'...${x}...'``.

The output is deterministic: two-space indent, one property per line, keys in the model's order. Reading it back
with aibx's Bicep reader gives the same model (tests/test_bicep_writer.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from aibx import model
from aibx.document import Unresolved
from aibx.translators.report import Report

IDENTITY_API = "Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31"
GALLERY_API = "Microsoft.Compute/galleries@2022-03-03"
GALLERY_IMAGE_API = "Microsoft.Compute/galleries/images@2022-03-03"
_IDENTITY_ID = re.compile(
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.ManagedIdentity/userAssignedIdentities/(?P<name>[^/]+)",
    re.IGNORECASE,
)
_GALLERY_IMAGE_ID = re.compile(
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Compute/galleries/"
    r"(?P<gallery>[^/]+)/images/(?P<image>[^/]+)(?P<rest>/versions/[^/]+)?",
    re.IGNORECASE,
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ARM_PARAMETER = re.compile(r"\[parameters\('([A-Za-z_][A-Za-z0-9_]*)'\)\]")
# words Bicep reserves, which cannot name a param
_RESERVED = {"param", "var", "resource", "module", "output", "targetScope", "existing", "true", "false", "null", "if"}


@dataclass
class Param:
    name: str
    type: str = "string"
    default: object = None
    has_default: bool = False
    secure: bool = False
    description: str = ""


@dataclass
class PackerVariable:
    """A Packer variable as the Bicep file declares it: its value (the default), sensitive or not."""

    value: object
    sensitive: bool = False
    description: str = ""


@dataclass
class _Writer:
    params: dict[str, Param] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)  # ARM parameter name -> Bicep identifier
    existing: list[str] = field(default_factory=list)  # `existing` resource declarations, as text
    taken: set[str] = field(default_factory=lambda: {"imageTemplate"})

    def identifier(self, wanted: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", wanted) or "value"
        if not _IDENT.fullmatch(base) or base in _RESERVED:
            base = f"p_{base}"
        name, n = base, 2
        while name in self.taken:
            name, n = f"{base}{n}", n + 1
        self.taken.add(name)
        return name

    def param(self, wanted: str, **kw: Any) -> str:
        name = self.identifier(wanted)
        self.params[name] = Param(name, **kw)
        return name


def write_bicep(
    tpl: model.ImageTemplate,
    report: Report,
    *,
    api_version: str | None = None,
    variables: Mapping[str, PackerVariable] | None = None,
) -> str:
    """The template as a Bicep file; ``report`` records what became of each field (as for ``--to aib``)."""
    from aibx.translators import aib, check_no_secret

    version = api_version or aib.NEWEST_API_VERSION
    resource = aib.template_to_resource(tpl, version)
    aib.prune_to_api_version(resource, version, report)
    resource = aib.protect_secrets(resource, report, arm=True)
    writer = _Writer()
    name = resource.get("name") if isinstance(resource.get("name"), str) else "imageTemplate"
    writer.param("imageTemplateName", default=name, has_default=True)
    body = _open_values(
        {k: v for k, v in resource.items() if k not in ("type", "apiVersion", "name")}, writer, report.secure_names
    )
    body = {"name": _Raw("imageTemplateName"), **body}
    body = _lift_identity(body, writer)
    body = _lift_galleries(body, writer)
    body = _use_variables(body, writer, variables or {})
    rtype = f"{resource['type']}@{resource['apiVersion']}"
    lines = ["// Written by aibx translate --to bicep", ""]
    for p in writer.params.values():
        lines += _param_lines(p)
    lines += writer.existing
    lines.append(f"resource imageTemplate '{rtype}' = {_value(body)}")
    lines += ["", "output imageTemplateId string = imageTemplate.id"]
    text = "\n".join(lines) + "\n"
    check_no_secret(text, report)
    return text


# ----------------------------------------------------------------------------------------------- lifting
def _open_values(value: Any, writer: _Writer, secure: Collection[str]) -> Any:
    """Values the translation could not know (``Unresolved``) and secrets (``Pieces``) as params: a
    ``<placeholder>`` or an ARM ``[parameters('x')]`` is the param of that name, anything else a param of its
    own; the reason is the param's description."""
    from aibx.translators import aib

    def expression(v: Any, path: tuple[object, ...] = ()) -> _Raw:
        if isinstance(v, Unresolved):
            m = _ARM_PARAMETER.fullmatch(v.text)
            if m:
                return _Raw(declare(m[1], v.reason, secure=m[1] in secure))
            parts = aib._unresolved_parts(v, secure)
            if "${" in v.text or not any(isinstance(p, aib.Placeholder) for p in parts):
                named = next((str(p) for p in reversed(path) if isinstance(p, str) and _IDENT.fullmatch(p)), "value")
                return _Raw(declare_new(named, f"{v.text}: {v.reason}"))
        else:
            parts = list(v.parts)
        if len(parts) == 1 and isinstance(parts[0], aib.Placeholder):
            p = parts[0]
            return _Raw(declare(p.name, p.reason, p.secure))
        out = []
        for part in parts:
            if isinstance(part, aib.Placeholder):
                out.append("${" + declare(part.name, part.reason, part.secure) + "}")
            else:
                out.append(_escape(part))
        return _Raw("'" + "".join(out) + "'")

    def declare_new(name: str, reason: str) -> str:
        """A param for one unknown value (each its own, even when two have the same text)."""
        return writer.param(name, description=reason)

    def declare(name: str, reason: str, secure: bool) -> str:
        if name in writer.renamed:
            return writer.renamed[name]
        bicep = writer.param(name, secure=secure, description=reason)
        writer.renamed[name] = bicep
        return bicep

    def _property_name(k: Any) -> Any:
        """A name that is not literal: an Unresolved, or a string with <placeholders> (an identity's ID)."""
        if isinstance(k, str) and aib._PLACEHOLDER.search(k):
            k = Unresolved(k, "")
        return _as_key(expression(k)) if isinstance(k, Unresolved) else k

    def walk(v: Any, path: tuple[object, ...]) -> Any:
        if isinstance(v, (Unresolved, aib.Pieces)):
            return expression(v, path)
        if isinstance(v, dict):
            return {_property_name(k): walk(x, (*path, k)) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x, (*path, i)) for i, x in enumerate(v)]
        return v

    return walk(value, ())


def _as_key(expr: _Raw) -> _Raw:
    """A property name from an expression: a bare reference would be read as the literal name."""
    return expr if expr.startswith("'") else _Raw("'${" + expr + "}'")


def _lift_identity(body: dict[str, Any], writer: _Writer) -> dict[str, Any]:
    identity = body.get("identity")
    ids = identity.get("userAssignedIdentities") if isinstance(identity, dict) else None
    if not isinstance(ids, dict) or len(ids) != 1:
        return body
    (key,) = ids
    m = _IDENTITY_ID.fullmatch(key) if isinstance(key, str) and not _open(key) else None
    if m is None:
        return body
    name = writer.param("identityName", default=m["name"], has_default=True, description="the user-assigned identity")
    rg = writer.param(
        "identityResourceGroup", default=m["rg"], has_default=True, description="the identity's resource group"
    )
    sub = writer.param(
        "identitySubscriptionId", default=m["sub"], has_default=True, description="the identity's subscription"
    )
    symbol = writer.identifier("identity")
    writer.existing += [
        f"resource {symbol} '{IDENTITY_API}' existing = {{",
        f"  name: {name}",
        f"  scope: resourceGroup({sub}, {rg})",
        "}",
        "",
    ]
    assert isinstance(identity, dict)
    new_identity = dict(identity)
    new_identity["userAssignedIdentities"] = {_Raw(f"'${{{symbol}.id}}'"): ids[key]}
    return {**body, "identity": new_identity}


def _lift_galleries(body: dict[str, Any], writer: _Writer) -> dict[str, Any]:
    properties = body.get("properties")
    targets = properties.get("distribute") if isinstance(properties, dict) else None
    if not isinstance(properties, dict) or not isinstance(targets, list):
        return body
    seen: dict[tuple[str, ...], str] = {}
    new_targets = []
    for target in targets:
        gid = target.get("galleryImageId") if isinstance(target, dict) else None
        m = _GALLERY_IMAGE_ID.fullmatch(gid) if isinstance(gid, str) and not _open(gid) else None
        if m is None:
            new_targets.append(target)
            continue
        key = (m["sub"], m["rg"], m["gallery"], m["image"])
        if key not in seen:
            seen[key] = _declare_gallery(writer, m)
        symbol = seen[key]
        ref = _Raw(f"{symbol}.id") if not m["rest"] else _Raw(_quote_text(f"${{{symbol}.id}}", m["rest"]))
        new_targets.append({**target, "galleryImageId": ref})
    return {**body, "properties": {**properties, "distribute": new_targets}}


def _open(text: str) -> bool:
    """Whether an ID holds an expression or a placeholder (it then stays as written)."""
    return text.startswith("[") or "<" in text


def _declare_gallery(writer: _Writer, m: re.Match[str]) -> str:
    gallery_name = writer.param("galleryName", default=m["gallery"], has_default=True, description="the gallery")
    image_name = writer.param(
        "imageDefinitionName", default=m["image"], has_default=True, description="the image definition"
    )
    rg = writer.param(
        "galleryResourceGroup", default=m["rg"], has_default=True, description="the gallery's resource group"
    )
    sub = writer.param(
        "gallerySubscriptionId", default=m["sub"], has_default=True, description="the gallery's subscription"
    )
    gallery = writer.identifier("gallery")
    image = writer.identifier("galleryImage")
    writer.existing += [
        f"resource {gallery} '{GALLERY_API}' existing = {{",
        f"  name: {gallery_name}",
        f"  scope: resourceGroup({sub}, {rg})",
        "}",
        "",
        f"resource {image} '{GALLERY_IMAGE_API}' existing = {{",
        f"  parent: {gallery}",
        f"  name: {image_name}",
        "}",
        "",
    ]
    return image


def _use_variables(value: Any, writer: _Writer, variables: Mapping[str, PackerVariable]) -> Any:
    """Packer variables whose value the template holds whole (a string of 3 characters or more, a non-empty array
    or object, and no other variable's) become params with that value as the default, and the template refers to
    them. Others are not declared: their values are in the template already (inside longer strings), or play no
    part in it; an environment value (PKR_VAR_) that the template does not use is never written."""
    candidates: dict[str, str] = {}
    taken: set[str] = set()
    for name, var in variables.items():
        if var.sensitive or not _usable(var.value):
            continue  # a secret: the translation made it a secure parameter already
        key = json.dumps(var.value, sort_keys=True)
        if key in taken:
            candidates.pop(key, None)  # two variables with one value: which one the template means is unknown
            continue
        taken.add(key)
        candidates[key] = name
    used: dict[str, str] = {}  # value (JSON) -> param name

    def walk(v: Any) -> Any:
        if not isinstance(v, _Raw) and _usable(v):
            key = json.dumps(v, sort_keys=True)
            if key in candidates:
                if key not in used:
                    var = variables[candidates[key]]
                    used[key] = writer.param(
                        candidates[key],
                        default=var.value,
                        has_default=True,
                        type=_bicep_type(var.value),
                        description=var.description,
                    )
                return _Raw(used[key])
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value) if candidates else value


def _usable(value: object) -> bool:
    if isinstance(value, str):
        return len(value) >= 3
    return isinstance(value, (list, dict)) and bool(value) and not _has_raw(value)


def _has_raw(value: object) -> bool:
    if isinstance(value, _Raw):
        return True
    if isinstance(value, dict):
        return any(_has_raw(k) or _has_raw(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_raw(v) for v in value)
    return False


def _bicep_type(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


# ----------------------------------------------------------------------------------------------- text
class _Raw(str):
    """Bicep text written as it is (a reference, an interpolation)."""


def _param_lines(p: Param) -> list[str]:
    lines = []
    if p.description:
        lines.append(f"@description({_quote(p.description)})")
    if p.secure:
        lines.append("@secure()")
    decl = f"param {p.name} {p.type}"
    if p.has_default and not p.secure:
        decl += f" = {_value(p.default)}"
    return [*lines, decl, ""]


def _value(value: Any, depth: int = 0) -> str:
    pad = "  " * (depth + 1)
    end = "  " * depth
    if isinstance(value, _Raw):
        return str(value)
    if isinstance(value, str):
        return _quote(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = [f"{pad}{_key(k)}: {_value(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + "\n".join(inner) + f"\n{end}}}"
    if isinstance(value, list):
        if not value:
            return "[]"
        inner = [f"{pad}{_value(v, depth + 1)}" for v in value]
        return "[\n" + "\n".join(inner) + f"\n{end}]"
    return _quote(str(value))


def _key(key: str) -> str:
    if isinstance(key, _Raw):
        return str(key)
    if _IDENT.fullmatch(key):
        return key
    return _quote(key)


def _quote_text(interpolation: str, literal: str) -> str:
    return "'" + interpolation + _escape(literal) + "'"


def _escape(text: str) -> str:
    out = text.replace("\\", "\\\\").replace("'", "\\'").replace("${", "\\${")
    return out.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _quote(text: str) -> str:
    return "'" + _escape(text) + "'"
