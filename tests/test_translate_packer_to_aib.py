"""Packer (HCL2 file, folder with *.auto.pkrvars.hcl, legacy JSON) → AIB: golden outputs and the rules the
issue lists: variables, functions, shell that really runs as root, elevation, uploads, deprovision, errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from aibx import model
from aibx.diagnostics import has_errors
from aibx.jsonc import parse
from aibx.loader import LoadOptions, load
from aibx.translators import AibOptions, PackerInputs, aib_document, packer_to_aib, read_packer
from aibx.translators.report import Status
from aibx.validation import validate
from tests.translate_cases import ENV, NOW, PACKER_CASES, expected_dir, packer_to_aib_outputs

PACKER_CASES_BY_NAME = {c.name: c for c in PACKER_CASES}


@pytest.mark.parametrize("case", PACKER_CASES, ids=[c.name for c in PACKER_CASES])
def test_golden(case) -> None:
    outputs = packer_to_aib_outputs(case)
    folder = expected_dir("packer-to-aib", case.name)
    assert sorted(outputs) == sorted(p.name for p in folder.iterdir())
    for name, text in outputs.items():
        assert text == (folder / name).read_text(encoding="utf-8"), (
            f"{case.name}/{name} differs: run scripts/update_translate_golden.py and review the diff"
        )


@pytest.mark.parametrize("case", PACKER_CASES, ids=[c.name for c in PACKER_CASES])
def test_every_output_is_a_valid_aib_template(case, tmp_path: Path) -> None:
    """aibx's own validator (the AIB schema of the apiVersion, and AIB's rules) finds no error."""
    for name, text in packer_to_aib_outputs(case).items():
        if name.endswith(".report.json") or name.endswith(".uploads.json"):
            continue
        path = tmp_path / name
        path.write_text(text)
        result = load(str(path))
        assert not result.diagnostics
        diags = validate(result.documents[0]).diagnostics
        errors = [d.format() for d in diags if d.severity.value == "error"]
        assert not errors, errors
        # what is left open is a placeholder AIB users fill in with -p, nothing else
        assert {d.code for d in diags} <= {"AIB005", "AIB020", "AIB029"}, [d.format() for d in diags]


def translate(path: Path, **options) -> list:
    inputs = PackerInputs(
        variables=options.pop("variables", []),
        var_files=options.pop("var_files", []),
        env=options.pop("env", dict(ENV)),
        now=NOW,
        cwd=str(path.parent if path.is_file() else path),
    )
    config = read_packer(str(path), inputs)
    if has_errors(config.diagnostics):
        return config.diagnostics
    return packer_to_aib(config, AibOptions(cwd=inputs.cwd, **options))


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


AZURE = """
source "azure-arm" "img" {
  subscription_id                   = "s"
  location                          = "westeurope"
  os_type                           = "%s"
  image_publisher                   = "p"
  image_offer                       = "o"
  image_sku                         = "k"
  managed_image_name                = "i"
  managed_image_resource_group_name = "rg"
}
"""


def build(os_type: str, body: str) -> str:
    return AZURE % os_type + 'build {\n  sources = ["source.azure-arm.img"]\n' + body + "\n}\n"


def test_variable_precedence_as_in_packer(tmp_path: Path) -> None:
    """default < PKR_VAR_ < *.auto.pkrvars.hcl (name order) < --var-file < --var."""
    folder = write(
        tmp_path / "cfg",
        {
            "vars.pkr.hcl": "\n".join(
                f'variable "{n}" {{\n  type    = string\n  default = "default"\n}}' for n in "abcde"
            ),
            "b.pkr.hcl": build(
                "Linux", '  provisioner "shell" {\n    inline = ["${var.a} ${var.b} ${var.c} ${var.d} ${var.e}"]\n  }'
            ),
            "1.auto.pkrvars.hcl": 'c = "auto1"\nd = "auto1"\ne = "auto1"\n',
            "2.auto.pkrvars.hcl": 'd = "auto2"\ne = "auto2"\n',
        },
    )
    (tmp_path / "extra.pkrvars.hcl").write_text('e = "file"\nundeclared = "x"\n')
    result = translate(
        folder,
        variables=["e=cli"],
        var_files=[str(tmp_path / "extra.pkrvars.hcl")],
        env={"PKR_VAR_b": "env", "PKR_VAR_c": "env", "PKR_VAR_d": "env", "PKR_VAR_e": "env"},
    )
    assert result[0].template.customize[0].inline == ["default env auto1 auto2 cli"]


def test_errors_point_at_file_line_and_name_the_problem(tmp_path: Path) -> None:
    cases = {
        "syntax": ("build {\n  sources = [\n}\n", "AIB072", 3),
        "function": (build("Linux", '  provisioner "shell" {\n    inline = [nosuch("x")]\n  }'), "AIB073", 15),
        "undeclared": (build("Linux", '  provisioner "shell" {\n    inline = [var.nope]\n  }'), "AIB074", 15),
        "source": ('build {\n  sources = ["source.azure-arm.missing"]\n}\n', "AIB072", 2),
    }
    for name, (text, code, line) in cases.items():
        (tmp_path / f"{name}.pkr.hcl").write_text(text)
        diags = translate(tmp_path / f"{name}.pkr.hcl")
        assert [d.code for d in diags] == [code], (name, [d.format() for d in diags])
        assert diags[0].line == line, (name, diags[0].format())
        assert diags[0].file.endswith(f"{name}.pkr.hcl")
    assert "function nosuch() is not supported" in translate(tmp_path / "function.pkr.hcl")[0].message


def test_shell_with_sudo_really_runs_as_root_and_keeps_packer_semantics(tmp_path: Path) -> None:
    body = """
  provisioner "shell" {
    execute_command  = "sudo sh -c '{{ .Vars }} {{ .Path }}'"
    environment_vars = ["A=1", "Q=it's"]
    inline           = ["id -u", "echo $A"]
    valid_exit_codes = [0, 7]
    skip_clean       = true
    remote_path      = "/tmp/custom.sh"
  }"""
    folder = write(tmp_path / "cfg", {"b.pkr.hcl": build("Linux", body)})
    [t] = translate(folder)
    [step] = t.template.customize
    assert step.inline == [
        "cat > /tmp/custom.sh <<'AIBX_EOF'",
        "#!/bin/sh -e",
        "id -u",
        "echo $A",
        "AIBX_EOF",
        "chmod 0755 /tmp/custom.sh",
        "aibx_rc=0",
        "sudo sh -c 'A='1' Q='it'\"'\"'s' /tmp/custom.sh' || aibx_rc=$?",
        'case " 0 7 " in *" $aibx_rc "*) ;; *) exit "$aibx_rc" ;; esac',
    ]


def test_powershell_elevation(tmp_path: Path) -> None:
    body = """
  provisioner "powershell" {
    elevated_user     = "packer"
    elevated_password = build.Password
    inline            = ["a"]
  }
  provisioner "powershell" {
    elevated_user = "NT AUTHORITY\\\\SYSTEM"
    inline        = ["b"]
  }
  provisioner "powershell" {
    elevated_user     = "Administrator"
    elevated_password = "x"
    inline            = ["c"]
    valid_exit_codes  = [0, 1641]
  }"""
    folder = write(tmp_path / "cfg", {"b.pkr.hcl": build("Windows", body)})
    [t] = translate(folder)
    a, b, c = t.template.customize
    assert (a.run_elevated, a.run_as_system) == (True, None)
    assert (b.run_elevated, b.run_as_system) == (True, True)
    assert (c.run_elevated, c.valid_exit_codes) == (True, [0, 1641])
    assert any(e.status is Status.APPROXIMATED and "Administrator" in e.detail for e in t.report.entries)


def test_uploads_carry_sha256_and_small_files_are_inlined_otherwise(tmp_path: Path) -> None:
    folder = write(
        tmp_path / "cfg",
        {
            "b.pkr.hcl": build(
                "Linux",
                '  provisioner "shell" {\n    script = "s.sh"\n  }\n'
                '  provisioner "file" {\n    source = "data.bin"\n    destination = "/tmp/"\n  }',
            ),
            "s.sh": "#!/bin/sh\necho hi\n",
        },
    )
    (folder / "data.bin").write_bytes(bytes(range(256)))
    [t] = translate(folder, upload_base_uri="https://x.example/up/")
    script, data = t.template.customize
    assert isinstance(script, model.ShellStep)
    assert script.script_uri == "https://x.example/up/s.sh"
    assert script.sha256_checksum == hashlib.sha256(b"#!/bin/sh\necho hi\n").hexdigest()
    assert isinstance(data, model.FileStep) and data.destination == "/tmp/data.bin"
    assert {u.name for u in t.uploads} == {"s.sh", "data.bin"}
    [inlined] = translate(folder)
    text = inlined.template.customize[1].inline[0]
    assert text.startswith("echo ") and text.endswith("| base64 -d > /tmp/data.bin")
    [tiny] = translate(folder, inline_limit=10)
    assert tiny.report.lossy


def test_a_trailing_deprovision_is_aibs_own_step(tmp_path: Path) -> None:
    waagent = "sudo /usr/sbin/waagent -force -deprovision+user && export HISTSIZE=0 && sync"
    same = f'  provisioner "shell" {{\n    inline = ["apt-get clean", "{waagent}"]\n  }}'
    other = '  provisioner "shell" {\n    inline = ["/usr/sbin/waagent -force -deprovision && sync"]\n  }'
    for body, expect in ((same, None), (other, model.LINUX_DEPROVISION_PATH)):
        folder = write(tmp_path / f"cfg{bool(expect)}", {"b.pkr.hcl": build("Linux", body)})
        [t] = translate(folder)
        steps = t.template.customize
        if expect is None:
            assert [s.inline for s in steps] == [["apt-get clean"]]
        else:
            assert steps[-1].name == "deprovision (from Packer)"
            assert steps[-1].inline[0] == f"cat > {expect} <<'AIBX_EOF'"


def test_legacy_json_functions(tmp_path: Path) -> None:
    doc = {
        "variables": {"who": "{{env `WHO`}}", "when": "{{timestamp}}", "dir": "{{template_dir}}"},
        "builders": [json.loads(json.dumps({"type": "azure-arm", "name": "b"}))],
        "provisioners": [{"type": "shell", "inline": ["echo {{user `who`}} {{user `when`}}"]}],
    }
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc))
    [t] = translate(path, env={"WHO": "me"})
    assert t.template.customize[0].inline == [f"echo me {int(NOW.timestamp())}"]
    # isotime, pwd, pipelines and split (issue 10, class 11)
    doc["provisioners"][0]["inline"] = [
        '{{isotime "2006-01-02"}}',
        "{{pwd}}",
        "{{user `who` | upper}}",
        '{{split (user `dir`) "/" 1}}',
    ]
    path.write_text(json.dumps(doc))
    [t] = translate(path, env={"WHO": "me"})
    assert t.template.customize[0].inline == [
        NOW.strftime("%Y-%m-%d"),
        str(tmp_path),
        "ME",
        str(tmp_path).split("/")[1],
    ]
    doc["provisioners"][0]["inline"] = ["{{nosuchfunction}}"]
    path.write_text(json.dumps(doc))
    [diag] = translate(path)
    assert diag.code == "AIB073" and "'nosuchfunction'" in diag.message and diag.line == 1


def test_sensitive_values_never_reach_the_report(tmp_path: Path) -> None:
    body = (
        '  provisioner "shell" {\n    environment_vars = ["T=${var.token}"]\n    inline = ["x"]\n'
        '    execute_command = "sudo {{ .Vars }} sh {{ .Path }}"\n  }'
    )
    folder = write(
        tmp_path / "cfg",
        {
            "v.pkr.hcl": 'variable "token" {\n  type = string\n  sensitive = true\n}\n',
            "b.pkr.hcl": build("Linux", body).replace('"o"', '"${var.token}"'),
        },
    )
    [t] = translate(folder, variables=["token=hunter2-secret"])
    assert "hunter2-secret" in json.dumps(t.template.customize[0].inline)
    assert "hunter2-secret" not in json.dumps(t.report.as_dict())


def test_arm_output_and_older_api_versions(tmp_path: Path) -> None:
    """--arm turns placeholders into ARM parameters; an older apiVersion drops what it does not know."""
    folder = Path(__file__).resolve().parent.parent / "fixtures" / "translate" / "packer" / "linux-single"
    [t] = translate(folder)
    arm = aib_document(t.template, t.report, arm=True)
    assert set(arm["parameters"]) == {"imageTemplateName", "identityId", "image_name", "api_token"}
    # the sensitive variable's value is a secureString parameter, never the value
    assert arm["parameters"]["api_token"]["type"] == "secureString"
    assert "tok-3f9a1c77e2" not in json.dumps(arm)
    image_id = arm["resources"][0]["properties"]["distribute"][0]["imageId"]
    assert image_id.startswith("[format('/subscriptions/") and "parameters('image_name')" in image_id
    path = tmp_path / "arm.json"
    path.write_text(json.dumps(arm))
    loaded = load(str(path), LoadOptions(parameters={"image_name": "x", "api_token": "tok-3f9a1c77e2"}))
    resource = loaded.documents[0].resource
    assert resource["properties"]["distribute"][0]["imageId"].endswith("/images/x")
    # deployed with the secret, the customizer is exactly the one the value would have made
    bare = json.loads(packer_to_aib_outputs(PACKER_CASES_BY_NAME["linux-single"])["web.azure-arm.web.json"])
    assert json.dumps(resource["properties"]["customize"]) == json.dumps(bare["properties"]["customize"]).replace(
        "<api_token>", "tok-3f9a1c77e2"
    )
    [secret_entry] = [e for e in t.report.entries if e.code == "AIB077"]
    assert secret_entry.status is Status.APPROXIMATED and "secureString" in secret_entry.detail

    old = aib_document(t.template, t.report, api_version="2020-02-14")
    assert "managedResourceTags" not in old["properties"]
    assert any(e.subject == "properties.managedResourceTags" and e.status is Status.DROPPED for e in t.report.entries)
    value, _ = parse(json.dumps(old))
    assert value["apiVersion"] == "2020-02-14"
