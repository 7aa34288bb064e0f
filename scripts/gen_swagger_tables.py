#!/usr/bin/env python3
"""Generate aibx/swagger_tables.py from the official AIB swagger files in scripts/swagger/<apiVersion>/.

The swagger files are copies of Azure/azure-rest-api-specs (MIT; see scripts/swagger/SOURCES.md). Field names,
types, enums, required fields, patterns, defaults and numeric limits all come from them; nothing is typed by hand
except the ARM envelope that the files reference from common-types (TrackedResource), spelled out in ENVELOPE.

    python scripts/gen_swagger_tables.py            # rewrite aibx/swagger_tables.py
    python scripts/gen_swagger_tables.py --check    # exit 1 if the committed file is out of date

tests/test_swagger_tables.py runs the --check comparison, so the tables cannot drift from the swagger files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SWAGGER = HERE / "swagger"
OUTPUT = HERE.parent / "aibx" / "swagger_tables.py"
ROOT = "ImageTemplate"

# common-types TrackedResource (referenced, not included, by the newer files; the older files define the same
# fields locally as "Resource"): id, name, type and systemData are read-only; location is required.
ENVELOPE = {
    "id": {"t": "string", "ro": True},
    "name": {"t": "string", "ro": True},
    "type": {"t": "string", "ro": True},
    "location": {"t": "string"},
    "tags": {"t": "object", "map": {"t": "string"}},
    "systemData": {"t": "object", "ro": True},
}
ENVELOPE_REQUIRED = ["location"]


def version_key(v: str) -> tuple[str, int]:
    return (v[:10], 0 if v.endswith("preview") else 1)


class Converter:
    def __init__(self, swagger: dict) -> None:
        self.defs = swagger["definitions"]
        self.out: dict[str, dict] = {}
        self.variants: dict[str, dict[str, str]] = {}
        for name, d in self.defs.items():
            for parent in d.get("allOf", []):
                ref = parent.get("$ref", "")
                if ref.startswith("#/definitions/"):
                    base = ref.rsplit("/", 1)[1]
                    if "discriminator" in self.defs.get(base, {}):
                        value = d.get("x-ms-discriminator-value", name)
                        self.variants.setdefault(base, {})[value] = name

    def ref(self, ref: str) -> dict:
        if ref.endswith("/systemData"):
            return ENVELOPE["systemData"]
        if not ref.startswith("#/definitions/"):
            raise SystemExit(f"unexpected external reference {ref}")
        name = ref.rsplit("/", 1)[1]
        if name not in self.out:
            self.out[name] = {}  # placeholder against cycles
            self.out[name] = self.definition(name)
        target = self.out[name]
        # scalar definitions (enums) are inlined; objects stay references
        return target if target.get("t") != "object" else {"t": "ref", "ref": name}

    def definition(self, name: str) -> dict:
        d = self.defs[name]
        props: dict[str, dict] = {}
        required: list[str] = []
        for parent in d.get("allOf", []):
            ref = parent["$ref"]
            if "TrackedResource" in ref or ref.endswith("/Resource"):
                props.update(ENVELOPE)
                required += ENVELOPE_REQUIRED
            elif ref.startswith("#/definitions/"):
                base = self.defs[ref.rsplit("/", 1)[1]]
                for k, v in base.get("properties", {}).items():
                    props[k] = self.spec(v)
                required += base.get("required", [])
        spec = self.spec(d, top=True)
        if spec["t"] != "object":
            return spec
        props.update(spec.get("props", {}))
        required += spec.get("required", [])
        spec["props"] = props
        if required:
            spec["required"] = sorted(set(required))
        if "discriminator" in d:
            spec["disc"] = d["discriminator"]
            spec["variants"] = dict(sorted(self.variants.get(name, {}).items()))
        return spec

    def spec(self, s: dict, top: bool = False) -> dict:
        if "$ref" in s and not top:
            out = dict(self.ref(s["$ref"]))
            if s.get("readOnly"):
                out["ro"] = True
            return out
        t = s.get("type") or ("object" if "properties" in s or "additionalProperties" in s else "string")
        out: dict = {"t": t}
        if t == "object":
            props = {k: self.spec(v) for k, v in s.get("properties", {}).items()}
            if props or not top:
                out["props"] = props
            if s.get("required"):
                out["required"] = sorted(s["required"])
            if isinstance(s.get("additionalProperties"), dict):
                out["map"] = self.spec(s["additionalProperties"])
        elif t == "array":
            out["items"] = self.spec(s.get("items", {"type": "string"}))
        for key, short in (("enum", "enum"), ("pattern", "pattern"), ("minimum", "min"), ("maximum", "max")):
            if key in s:
                out[short] = s[key]
        if "default" in s:
            out["default"] = s["default"]
        if s.get("readOnly"):
            out["ro"] = True
        return out


def build() -> str:
    versions = sorted((p.name for p in SWAGGER.iterdir() if (p / "imagebuilder.json").exists()), key=version_key)
    schemas = {}
    name_patterns = {}
    for v in versions:
        swagger = json.loads((SWAGGER / v / "imagebuilder.json").read_text())
        # the template name is a path parameter of the REST API, not a body field
        name_patterns[v] = swagger["parameters"]["ImageTemplateNameParameter"]["pattern"]
        conv = Converter(swagger)
        conv.ref(f"#/definitions/{ROOT}")
        # every definition reachable from the image template, variants included
        pending = True
        while pending:
            pending = False
            for spec in list(conv.out.values()):
                for variant in spec.get("variants", {}).values():
                    if variant not in conv.out:
                        conv.ref(f"#/definitions/{variant}")
                        pending = True
        schemas[v] = dict(sorted(conv.out.items()))
    tables = {"API_VERSIONS": versions, "ROOT": ROOT, "TEMPLATE_NAME_PATTERNS": name_patterns, "SCHEMAS": schemas}
    body = json.dumps(tables, indent=1)
    if "'''" in body:
        raise SystemExit("the tables contain triple quotes; choose another quoting in gen_swagger_tables.py")
    # The tables are JSON in a string: json.loads builds them about ten times faster than Python evaluates the
    # same dict literals, and `aibx validate` pays for this import on every run.
    return (
        '"""Generated by scripts/gen_swagger_tables.py from the AIB swagger files; do not edit by hand.\n\n'
        "API_VERSIONS: the apiVersions, oldest first. ROOT: the definition of the resource. TEMPLATE_NAME_PATTERNS:\n"
        "the pattern of the image template's name (the imageTemplateName path parameter) per apiVersion.\n"
        "SCHEMAS: per apiVersion, each definition reachable from ImageTemplate: t (type), props, required, map\n"
        "(additionalProperties), items, enum, pattern, min, max, default, ro (read-only), and for polymorphic\n"
        'definitions disc (discriminator field) and variants (discriminator value -> definition)."""\n\n'
        "import json\n\n"
        f"_TABLES = json.loads(\n    r'''{body}'''\n)\n\n"
        'API_VERSIONS: tuple[str, ...] = tuple(_TABLES["API_VERSIONS"])\n'
        'ROOT: str = _TABLES["ROOT"]\n'
        'TEMPLATE_NAME_PATTERNS: dict[str, str] = _TABLES["TEMPLATE_NAME_PATTERNS"]\n'
        'SCHEMAS: dict[str, dict[str, dict]] = _TABLES["SCHEMAS"]\n'
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    args = ap.parse_args()
    text = build()
    if args.check:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT} is out of date; run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
