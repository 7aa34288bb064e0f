"""Fuzzing translation: the Packer importers (HCL2 files and folders, legacy JSON templates) with generated and
mutated configurations, and the AIB → Packer writer with damaged templates, down to `aibx translate` itself.

Contract: reading a Packer configuration gives a configuration and diagnostics, translating it gives templates
and reports, writing gives text and a report; every diagnostic is one of aibx's codes on one line, the outputs
are JSON (or HCL that parses), and `aibx translate` exits 0, 1 or 2. Never an exception, a hang or a runaway
allocation (tests/support/fuzzing.py has the harness).
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import hcl2
from hypothesis import strategies as st

from aibx.diagnostics import CODES, Diagnostic, has_errors
from aibx.loader import load_text
from aibx.translators import AibOptions, PackerInputs, aib_document, aib_to_packer, packer_to_aib, read_packer
from aibx.validation import validate
from tests.support.cli import invoke
from tests.support.fuzz_inputs import (
    REAL_HCL,
    damaged_templates,
    mutated_hcl,
    odd_strings,
    packer_hcl_configs,
    packer_json_configs,
    to_json_text,
    write_file,
)
from tests.support.fuzzing import budgets, fuzz
from tests.support.tracebacks import debug_tracebacks

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
SCRIPT = "#!/bin/sh\necho fuzz\n"


def check_diagnostics(diags: list[Diagnostic]) -> None:
    for d in diags:
        assert d.code in CODES, d
        assert "\n" not in d.format(), d
        json.dumps(d.as_dict())


def translate_folder(folder: Path, path: Path, variables: list[str], upload: bool, only: list[str]) -> None:
    """read_packer → packer_to_aib → aib_document, and aibx's validator on each AIB template produced."""
    inputs = PackerInputs(variables=variables, env={"HOME": "/root"}, now=NOW, cwd=str(folder))
    config = read_packer(str(path), inputs)
    check_diagnostics(config.diagnostics)
    if has_errors(config.diagnostics):
        return
    options = AibOptions(only=only, cwd=str(folder), upload_base_uri="https://example.org/aib" if upload else None)
    for translation in packer_to_aib(config, options):
        report = translation.report.as_dict()
        json.dumps(report)
        check_diagnostics(translation.report.diagnostics)
        if translation.template is None:
            continue
        for upload_ in translation.uploads:
            assert len(upload_.sha256) == 64
        text = json.dumps(aib_document(translation.template, translation.report), ensure_ascii=False)
        result = load_text(text, "translated.json")
        check_diagnostics(result.diagnostics)
        for doc in result.documents:
            check_diagnostics(validate(doc).diagnostics)


def packer_folder(tmp: str) -> Path:
    """A config folder with the files real configurations refer to."""
    folder = Path(tmp)
    write_file(folder / "scripts" / "a.sh", SCRIPT)
    write_file(folder / "scripts" / "setup.sh", SCRIPT)
    write_file(folder / "files" / "motd.txt", "hello\n")
    write_file(folder / "motd.txt", "hello\n")
    return folder


# ----------------------------------------------------------------------------------------------- checks
def check_hcl_config(text: str, pkrvars: str | None, variables: list[str], upload: bool, only: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="aibx-fuzz-") as tmp:
        folder = packer_folder(tmp)
        path = write_file(folder / "build.pkr.hcl", text)
        if pkrvars is not None:  # a folder with an .auto.pkrvars.hcl is read as a whole
            write_file(folder / "fuzz.auto.pkrvars.hcl", pkrvars)
            path = folder
        translate_folder(folder, path, variables, upload, only)


def check_legacy_json(doc: object, variables: list[str], upload: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="aibx-fuzz-") as tmp:
        folder = packer_folder(tmp)
        path = write_file(folder / "template.json", to_json_text(doc))
        translate_folder(folder, path, variables, upload, [])


def check_aib_to_packer(doc: object) -> None:
    with tempfile.TemporaryDirectory(prefix="aibx-fuzz-") as tmp:
        result = load_text(to_json_text(doc), str(Path(tmp) / "template.json"))
        for document in result.documents:
            template = validate(document).template
            text, report = aib_to_packer(template, Path(tmp), source="template.json")
            json.dumps(report.as_dict())
            check_diagnostics(report.diagnostics)
            if not report.diagnostics:
                hcl2.parses_to_tree(text)  # what aibx writes is HCL


def check_translate_cli(doc: object, config: str, to: str, lossy: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="aibx-fuzz-") as tmp:
        folder = packer_folder(tmp)
        if to == "packer":
            path = write_file(folder / "template.json", to_json_text(doc))
        else:
            path = write_file(folder / "build.pkr.hcl", config)
        args = ["translate", str(path), "--to", to, "-o", str(folder / "out") + "/", "--format", "json"]
        with debug_tracebacks():
            done = invoke(*args, *(["--allow-lossy"] if lossy else []))
        assert done.code in (0, 1, 2), done.err
        assert "internal error" not in done.err
        report = json.loads(done.out)  # one document, whatever the outcome
        assert report["exitCode"] == done.code
        assert all(d["code"] in CODES for d in report["diagnostics"])


# ----------------------------------------------------------------------------------------------- tests
assignments = st.lists(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["name", "list", "unset", "nope", "secret"]), odd_strings)
    | st.sampled_from(['list=["a"]', "map={a=1}", "name", "=x", "unset=${var.name}"]),
    max_size=3,
)
only_patterns = st.lists(st.sampled_from(["*", "img", "azure-arm.*", "[", "nomatch", "*.x y"]), max_size=2)


@budgets(sample=60, full=800)
def test_generated_hcl_configs_translate_or_give_diagnostics(budget: int) -> None:
    fuzz(
        budget,
        check_hcl_config,
        text=st.one_of(packer_hcl_configs(), mutated_hcl(), st.sampled_from(REAL_HCL), st.text(max_size=200)),
        pkrvars=st.one_of(st.none(), st.sampled_from(['name = "x"\n', "list = [1, 2]\n", "nope = 1\n", "name = \n"])),
        variables=assignments,
        upload=st.booleans(),
        only=only_patterns,
    )


@budgets(sample=60, full=800)
def test_legacy_json_templates_translate_or_give_diagnostics(budget: int) -> None:
    variables = st.lists(st.sampled_from(["subscription_id=x", "ssh_user=", "nope=1", "release=[1"]), max_size=2)
    fuzz(budget, check_legacy_json, doc=packer_json_configs(), variables=variables, upload=st.booleans())


@budgets(sample=60, full=600)
def test_damaged_aib_templates_translate_to_packer_hcl_that_parses(budget: int) -> None:
    fuzz(budget, check_aib_to_packer, doc=damaged_templates())


@budgets(sample=25, full=150)
def test_aibx_translate_exits_0_1_or_2(budget: int) -> None:
    fuzz(
        budget,
        check_translate_cli,
        doc=damaged_templates(),
        config=st.one_of(packer_hcl_configs(), mutated_hcl()),
        to=st.sampled_from(["packer", "aib"]),
        lossy=st.booleans(),
    )
