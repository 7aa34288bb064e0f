#!/usr/bin/env python3
"""Generate docs/diagnostics.md from the code registry (aibx.diagnostics.CODES) and the golden outputs.

Each code gets its default severity and title from the registry, the severities it is actually reported with and
a real example line from the golden files of the fixtures (fixtures/*/golden/*.txt), and the explanation below.

    python scripts/gen_diagnostics_doc.py            # rewrite docs/diagnostics.md
    python scripts/gen_diagnostics_doc.py --check    # exit 1 if docs/diagnostics.md is out of date

tests/test_diagnostics_doc.py runs the --check comparison, so the page cannot drift from the registry.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aibx.diagnostics import CODES  # noqa: E402

OUTPUT = ROOT / "docs" / "diagnostics.md"
GOLDEN_GLOB = "fixtures/*/golden/*.txt"
LINE = re.compile(r"^(?P<where>.*?): (?P<severity>error|warning)\[(?P<code>AIB\d{3})\] (?P<rest>.*)$")

# What each code means and what to do about it (the titles live in aibx/diagnostics.py).
EXPLANATIONS: dict[str, str] = {
    "AIB001": "The file does not exist, is not readable, or is not UTF-8 text.",
    "AIB002": "The file is not JSON as ARM reads it (comments and trailing commas are fine). The position is where "
    "the parser stopped; a missing comma is pointed out. In a `.bicep` file: syntax the Bicep grammar aibx uses "
    "cannot read, named with its line; an error when it is inside the image template, a warning elsewhere (the "
    "template is read without it). `az bicep build` and the ARM JSON it writes are the fallback.",
    "AIB003": "The JSON holds no image template: not an object, an ARM parameters file named as a template, a "
    "deployment without a `Microsoft.VirtualMachineImages/imageTemplates` resource, or the `properties` object "
    "alone; or a file that is not JSON at all but a Packer configuration (HCL2, or a legacy JSON template: "
    "`aibx translate FILE --to aib`), Bicep (`az bicep build`) or YAML, which the message names. Image templates "
    "inside nested `Microsoft.Resources/deployments` (Bicep modules, solution templates) are found and checked, "
    "also in a linked template file inside the template's folder (never outside it), once per iteration of a copy "
    "loop (up to 50). An image template marked "
    "`existing` is a reference, not a template; one whose `condition` is false with the given parameters is still "
    "checked, but its errors are warnings (ARM does not deploy it). "
    "In a folder, such files are skipped and counted in the summary.",
    "AIB004": "A bare resource whose `type` is missing or not `Microsoft.VirtualMachineImages/imageTemplates`. "
    "Many published templates have it wrong; REST calls ignore it, ARM and Bicep need it.",
    "AIB005": "A value only Azure knows before deployment (`reference()`, `utcNow()`, `resourceGroup()` without "
    "`--resource-group`), a parameter without a value, or a `<placeholder>` nobody substituted. Pass it with "
    "`-p`, `--parameters` or the context options; `aibx run` refuses only the steps that need it. Each unknown "
    "value is reported once, at its first use, with the number of other places; no check that needs the value "
    "reports an error about it. The ARM lambda functions (`filter`, `map`, `reduce`, `sort`, `toObject`, "
    "`shallowMerge`, `items`), `tryGet`, `uri` and property and variable copy loops (`copyIndex`) are "
    "evaluated; a `null` value (Bicep's `null()`, a nullable parameter without a value) is a field not written.",
    "AIB006": "An ARM expression that ARM itself would reject: a syntax error, an unknown parameter or variable, a "
    "wrong argument. ARM treats every string in `[...]` as an expression, so a shell test such as `[ -d /opt ]` "
    "must be written `[[ -d /opt ]`. In a `.bicep` file: an expression Bicep would reject, such as `'a' + 1` or "
    "a property the object does not have (`.?` reads an optional one).",
    "AIB007": "A parameter value ARM would reject (type, `allowedValues`, `minValue`/`maxValue`, "
    "`minLength`/`maxLength`), a parameters-file entry the template does not declare, a malformed parameters "
    "file or `-p`. A `-p` that no template uses is a warning for `validate` (probably a typo), an error for `plan` "
    "and `run`.",
    "AIB008": "The `apiVersion` is missing, unresolved or unknown, so aibx checks against the newest; an unknown "
    "written version (or `--api-version`) is an error. Bare resources used with REST name the version in the URL; "
    "give `--api-version` to check against it. When the version is unresolved (a parameter without a value) or "
    "left to the submission (a bare resource without one), an error found with the newest stays an error only "
    "where every apiVersion the service accepts today finds one; the others become warnings that say so.",
    "AIB009": "`--resource NAME` matches no image template of the file (by name, symbolic name or `resources[N]`).",
    "AIB010": "Shell and PowerShell customizers and validators need exactly one of `scriptUri` (`script` before "
    "2019-05-01-preview) and `inline` (swagger: \"Exactly one of 'scriptUri' or 'inline' can be specified\").",
    "AIB011": 'A required value is missing or empty: a required field written as `""`, a File step without '
    "`sourceUri` or `destination`, a PlatformImage source without `publisher`, `offer` or `sku`.",
    "AIB012": 'PowerShell `runAsSystem` "can only be true when the runElevated field above is set to true" (swagger).',
    "AIB013": "Two customizers (or two validators) share a name (compared without case); logs and errors could "
    "not tell them apart.",
    "AIB014": '`runOutputName` "must be unique to each distribution target" (AIB docs), compared without case.',
    "AIB015": "`buildTimeoutInMinutes` above 0 but below the documented minimum of 6 minutes (0 means 240).",
    "AIB016": "`buildTimeoutInMinutes` below 60 for a Windows image: the docs advise against it; Windows builds "
    "with updates and restarts rarely fit.",
    "AIB017": "`restartTimeout` must be a magnitude and unit such as `5m`, `2h` or `90s` (swagger).",
    "AIB018": "`sha256Checksum` must be the 64 hexadecimal digits of SHA-256 (an MD5 or SHA-1 sum is too short).",
    "AIB019": "The docs ask for the checksum in lower case; AIB compares it as written.",
    "AIB020": "A downloaded script or file without `sha256Checksum`: a changed or tampered download would run "
    "unnoticed. Only reported for API versions that have the field (2020-02-14 and later).",
    "AIB021": "A step that cannot run on the image's operating system: WindowsRestart, WindowsUpdate or "
    "elevated PowerShell on Linux, Shell on Windows (errors); plain PowerShell on Linux needs `pwsh` "
    "(a warning). The OS comes from the source image, else from the steps; `--os` overrides.",
    "AIB022": '"Linux – the only path Image builder can write to is /tmp" (AIB docs): upload below /tmp and move '
    "the file with a Shell step.",
    "AIB023": '`replicationRegions` (deprecated) "can be specified only if targetRegions is not specified" (swagger).',
    "AIB024": '`proxyVmSize` "must not be specified if containerInstanceSubnetId is specified", and '
    '`containerInstanceSubnetId` "may be specified only if subnetId is also specified" (swagger).',
    "AIB025": "Neither the source image nor the steps settle the operating system (for example a ManagedImage "
    "source with both Shell and PowerShell steps); give `--os`.",
    "AIB026": "WindowsUpdate `filters` are `include:EXPR` or `exclude:EXPR` with a PowerShell expression over `$_`; "
    "aibx checks the prefix and that brackets and quotes balance.",
    "AIB027": 'A number or boolean written as a string (`"90"`, `"false"`); write the value without quotes.',
    "AIB028": '`storageAccountType` on the SharedImage target "can be specified only if replicationRegions is '
    'specified" (swagger); with `targetRegions` set it per region.',
    "AIB029": "AIB downloads scripts and files over http(s) only; a local path or `file://` URI works with "
    "`aibx run`, not in Azure. Query strings (SAS tokens) are never shown.",
    "AIB031": '`identity` of type UserAssigned must name exactly one identity ("Supports a single identity only").',
    "AIB032": "`validate.sourceValidationOnly` validates the source image without building: customizers do not run, "
    "and without `inVMValidations` nothing is checked.",
    "AIB033": "A bare resource goes to AIB as written (REST, `az resource create`): no ARM evaluates `[...]`, so the "
    "expression arrives literally. Evaluate it in a deployment template, or write the value.",
    "AIB034": "JSON allows a key twice in one object, but only the later value counts: the earlier one is lost.",
    "AIB035": "A template is checked against the service as it runs today: since 2020-05-26 AIB accepts no "
    "template without a user-assigned identity, whatever its apiVersion. Create one, grant it access, and name it "
    "in `identity.userAssignedIdentities`. Sources: aibx/api_history.py.",
    "AIB036": "Something the service accepted once and no longer does, whatever the apiVersion: RHEL ISO sources "
    "(since 2020-03-31; use a RHEL Bring Your Own Subscription PlatformImage) and apiVersions before "
    "2019-05-01-preview (since 2020-05-26). Sources: aibx/api_history.py.",
    "AIB050": 'A field the apiVersion does not define, with "did you mean" for near misses (`aritfactTags`). From '
    "2024-02-01 the service rejects it; older versions ignore it, so it silently has no effect (a warning). "
    "ARM deployment keys (`dependsOn`, ...) in a bare resource are flagged for 2024-02-01 and later.",
    "AIB051": "A field name in the wrong case (`imageVersionID`, `sha256checksum`, `vmboot`): an error from "
    "2024-02-01, when the service became case-sensitive, a warning before.",
    "AIB052": 'A value of the wrong JSON type (a string where an array is expected, as in `"inline": "..."`).',
    "AIB053": "A value outside the field's enum; a near miss in case only (`latest` for `Latest`, `shell` in a "
    "2024 template) is an error from 2024-02-01 and a warning before.",
    "AIB054": "A field the swagger requires (for example `identity` from 2020-02-14, `source`, a step's `type`).",
    "AIB055": "A number outside the swagger's limits (`buildTimeoutInMinutes` 0..960, `replicaCount` at least 1).",
    "AIB056": "A value that does not match the swagger's pattern: `runOutputName` and the template name allow "
    "letters, digits, `-`, `_` (and `.` from 2019-05-01-preview), at most 64 characters.",
    "AIB057": "A source, customizer, validator, distributor or versioning type no apiVersion knows.",
    "AIB058": "A field or type that exists, but not in this apiVersion: `script` and ISO sources (removed), "
    "`targetRegions` and `versioning` (2022-07-01), `errorHandling` (2023-07-01), and so on. An error from "
    "2024-02-01 on, where the service rejects unknown fields; before, a warning: the service ignores an unknown "
    "field (it has no effect), and for a type of another version the evidence is too thin to call it an error. "
    "Features that 2019-05-01-preview accepted before a swagger listed them (`runElevated`, `sha256Checksum`, "
    "`osDiskSizeGB`, `vnetConfig`, the WindowsUpdate customizer: the quickstarts' release notes of December 2019 "
    "and March 2020) are not reported, and are checked against the swagger that lists them "
    "(aibx/api_history.py names each source).",
    "AIB059": "A read-only field (`exactVersion`, `provisioningState`, ...), typical of `az image builder show` "
    "output: the service sets it and ignores what is written.",
    "AIB070": "`aibx translate`: the target format has no field with the same meaning, so the closest faithful "
    "equivalent was written (for example a scriptUri becomes an inline download that checks the sha256 before it "
    "runs). The translation report (`--report-json`) carries this code on each such entry, with how.",
    "AIB071": "`aibx translate`: the target format cannot express this field or step at all, and the report says "
    "why (for example a Packer `shell-local` provisioner, or a managed image in another region). A translation "
    "with such an entry is lossy: exit status 1 unless `--allow-lossy`. As an error (exit 2, nothing written): "
    "the Packer file would have no image to start from (an ISO source) or no output (no distribute target Packer "
    "can write), which Packer refuses; or a secret could not be kept out of the output. `aibx validate`, `plan` "
    "and `run` of a Packer configuration report it as a warning, before anything runs: that provisioner or field "
    "does not run.",
    "AIB072": "`aibx translate --to aib`: the Packer configuration cannot be read: an HCL syntax error, an unknown "
    "source named in a build, an attribute at the top level, or a JSON template without `builders`.",
    "AIB073": "`aibx translate --to aib`: an expression cannot be evaluated: a function Packer does not have "
    "either (the message lists the ones aibx evaluates; Packer's others give open values), a legacy JSON template "
    "function aibx does not know, or a type error.",
    "AIB074": "`aibx translate --to aib`: a variable problem: `--var` or a variables file names a variable the "
    "configuration neither declares nor uses (a legacy `{{user}}` variable used but not declared is a required "
    "one, as in Packer), a value does not convert to the declared type, or a value without which the build "
    "cannot be selected (`only`/`except`) is missing.",
    "AIB075": "`aibx translate --to packer`: a `file:` scriptUri or sourceUri (a file next to the template) cannot "
    "be read, or its content does not match `sha256Checksum`; Packer would upload it without checking.",
    "AIB076": "`aibx translate`: nothing to translate (no source matches `--only`), several templates but no `-o "
    "DIR`, options that belong to the other direction, or an output that cannot be written.",
    "AIB077": "`aibx translate`: a secret (the value of a `secureString`/`secureObject` parameter, or of a Packer "
    "variable declared `sensitive`) would have been written into the output, so a reference is written instead: a "
    "Packer variable declared `sensitive = true` without a default (pass it with `-var NAME=VALUE` or "
    "`PKR_VAR_NAME`), an ARM `secureString` parameter with `--arm`, or a `<placeholder>` in a bare AIB resource "
    "(reported as dropped: `aibx validate -p NAME=VALUE`, or translate with `--arm`). See docs/translate.md.",
    "AIB078": "`aibx translate --to aib`: a provisioner's `script`, `scripts` or file `source` names a local file or "
    "folder outside the configuration's folder (an absolute path, `..`, a symlink out), which would be copied into "
    "the template; a configuration's author is not trusted with your files, so it is not read and the provisioner "
    "is dropped. Pass `--allow-local-files` for a configuration you trust. See docs/security.md.",
    "AIB079": "`aibx translate --to aib`: a value that comes from your environment (`env()` in a variable default, "
    "`{{env}}` in legacy JSON, `PKR_VAR_NAME`) would have been written into the output, so a reference is written "
    "instead: a `secureString` parameter with `--arm` (approximated), or a `<placeholder>` in a bare AIB resource "
    "(dropped: `aibx validate -p NAME=VALUE`). Pass `--allow-env-values` to write the values. See docs/translate.md.",
}


def examples() -> tuple[dict[str, str], dict[str, set[str]]]:
    """For each code the golden line that shows it best (from a file rather than the command line, then the
    shortest), and the severities each code appears with."""
    first: dict[str, str] = {}
    severities: dict[str, set[str]] = {}
    for path in sorted(ROOT.glob(GOLDEN_GLOB)):
        for line in path.read_text().splitlines():
            m = LINE.match(line)
            if not m:
                continue
            code = m.group("code")
            severities.setdefault(code, set()).add(m.group("severity"))
            rank = (line.startswith("<"), len(line))
            if code not in first or rank < (first[code].startswith("<"), len(first[code])):
                first[code] = line
    return first, severities


def build() -> str:
    first, seen = examples()
    out = [
        "# Diagnostic codes",
        "",
        "<!-- Generated by scripts/gen_diagnostics_doc.py from aibx/diagnostics.py and the golden files; do not edit"
        " by hand. -->",
        "",
        "`aibx validate` reports every problem at once, one line each:",
        "",
        "```text",
        "FILE:LINE:COLUMN: SEVERITY[CODE] JSON.PATH: MESSAGE",
        "```",
        "",
        "An **error** is what the AIB service (or ARM) would reject for the template's `apiVersion`: the exit status "
        "is 2. A **warning** is accepted by the service but probably not what was meant, or cannot be checked "
        "before deployment: the exit status stays 0 unless `--strict` is given. `--format json` gives the same "
        "diagnostics as objects with `severity`, `code`, `message`, `file`, `line`, `column` and `path`.",
        "",
        "Codes are stable: a code is never renumbered or reused. AIB001-AIB009 are about reading the file, "
        "AIB010-AIB049 are AIB's rules and lints, AIB050-AIB059 come from the swagger schema of each "
        "`apiVersion`, AIB070-AIB079 are reserved for `aibx translate`. Some codes are reported with another "
        "severity than their default where the service's behaviour depends on the `apiVersion` (see *Reported "
        "as*).",
        "",
        "| code | default | title |",
        "|---|---|---|",
    ]
    for code, (severity, title) in CODES.items():
        out.append(f"| [{code}](#{code.lower()}) | {severity.value} | {title} |")
    out.append("")
    for code, (severity, title) in CODES.items():
        out += [f"## {code}", "", f"**{title}** — default severity: {severity.value}."]
        reported = seen.get(code)
        if reported and reported != {severity.value}:
            out[-1] += f" Reported as: {', '.join(sorted(reported))}."
        out += ["", EXPLANATIONS.get(code, "").strip() or "(No explanation yet.)", ""]
        if code in first:
            out += ["```text", first[code], "```", ""]
        else:
            out += ["No example in the golden files yet.", ""]
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    args = ap.parse_args()
    text = build()
    missing = [c for c in CODES if c not in EXPLANATIONS]
    if missing and not args.check:
        print(f"note: no explanation yet for {', '.join(missing)} (add it to EXPLANATIONS)", file=sys.stderr)
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is out of date; run scripts/{Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
