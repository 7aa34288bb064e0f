"""``aibx translate --to aib`` does not copy your files or your environment into what it writes (issue 11, item 1).

A configuration's author is not trusted with the files on your machine or the values in your environment: a local
file outside the configuration's folder is not read without ``--allow-local-files`` (AIB078, the provisioner
dropped), and a value from the environment (``env()``, ``{{env}}``, ``PKR_VAR_NAME``) is written as a parameter
(``--arm``) or a ``<placeholder>``, never as its value, unless ``--allow-env-values`` (AIB079)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.cli import Completed, invoke

KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAKn4ryQ-fake-key\n-----END OPENSSH PRIVATE KEY-----\n"
)
FILE_TEXT = "Kn4ryQ-secret-file-text\n"
ENV_SECRET = "Kn4ryQ-aws-secret-7e1"
MARKS = ("Kn4ryQ", "KEY-----")

SOURCE = """source "azure-arm" "x" {
  os_type = "Linux"
  location = "westus"
  image_publisher = "Canonical"
  image_offer = "ubuntu-24_04-lts"
  image_sku = "server"
  managed_image_name = "x"
  managed_image_resource_group_name = "rg"
}
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A user's files (a private key, a secrets file) beside a folder holding a configuration from someone else."""
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_ed25519").write_text(KEY)
    (tmp_path / "secrets.txt").write_text(FILE_TEXT)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "setup.sh").write_text("echo setting up\n")
    return tmp_path


def translate(folder: Path, body: str, *args: str, variables: str = "") -> Completed:
    (folder / "build.pkr.hcl").write_text(
        variables + SOURCE + 'build {\n  sources = ["source.azure-arm.x"]\n' + body + "}\n"
    )
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return invoke("translate", "build.pkr.hcl", "--to", "aib", "--format", "json", *args)
    finally:
        os.chdir(cwd)


def entries(result: Completed, code: str) -> list[dict]:
    document = json.loads(result.out)
    return [e for r in document["reports"] for e in r["entries"] if e.get("code") == code]


def template(result: Completed) -> dict:
    return json.loads(json.loads(result.out)["reports"][0]["text"])


def assert_nothing_leaked(result: Completed) -> None:
    for mark in MARKS:
        assert mark not in result.out and mark not in result.err, f"{mark} leaked:\n{result.text}"


OUTSIDE = [
    ('provisioner "file" {{\n    source = "{home}/.ssh/id_ed25519"\n    destination = "/tmp/k"\n  }}\n', "absolute"),
    ('provisioner "shell" {{\n    script = "../secrets.txt"\n  }}\n', "dot-dot"),
    ('provisioner "shell" {{\n    scripts = ["setup.sh", "../secrets.txt"]\n  }}\n', "one of scripts"),
    (
        'provisioner "file" {{\n    sources = ["setup.sh", "{home}/secrets.txt"]\n    destination = "/tmp/"\n  }}\n',
        "sources",
    ),
    ('provisioner "powershell" {{\n    script = "../secrets.txt"\n  }}\n', "powershell"),
    ('provisioner "file" {{\n    source = "link.txt"\n    destination = "/tmp/k"\n  }}\n', "symlink out"),
]


@pytest.mark.parametrize(("body", "case"), OUTSIDE, ids=[c for _, c in OUTSIDE])
def test_local_files_outside_the_folder_are_not_read(home: Path, body: str, case: str) -> None:
    (home / "cfg" / "link.txt").symlink_to(home / ".ssh" / "id_ed25519")
    result = translate(home / "cfg", body.format(home=home))
    assert result.code == 1, result.text  # lossy: the provisioner is dropped
    assert_nothing_leaked(result)
    (entry,) = entries(result, "AIB078")
    assert entry["status"] == "dropped" and "--allow-local-files" in entry["detail"] and entry["line"] > 0
    allowed = translate(home / "cfg", body.format(home=home), "--allow-local-files", "--allow-lossy")
    assert allowed.code == 0 and not entries(allowed, "AIB078"), allowed.text
    assert any(m in json.dumps(template(allowed)) for m in MARKS)  # read when the user allows it


def test_files_inside_the_folder_need_no_flag(home: Path) -> None:
    (home / "cfg" / "sub").mkdir()
    (home / "cfg" / "sub" / "motd").write_text("hello\n")
    body = 'provisioner "shell" {\n    script = "setup.sh"\n  }\n'
    body += 'provisioner "file" {\n    source = "sub/../sub/motd"\n    destination = "/tmp/motd"\n  }\n'
    result = translate(home / "cfg", body, "--allow-lossy")
    assert result.code == 0 and not entries(result, "AIB078"), result.text
    assert "echo setting up" in json.dumps(template(result)) and "hello" in json.dumps(template(result))


def test_a_folder_outside_is_not_published(home: Path) -> None:
    body = f'provisioner "file" {{\n    source = "{home}/.ssh"\n    destination = "/tmp/"\n  }}\n'
    result = translate(home / "cfg", body, "--upload-base-uri", "https://example.org/up", "-o", "out.json")
    assert result.code == 1 and entries(result, "AIB078"), result.text
    assert not (home / "cfg" / "upload").exists()


ENV_DEFAULT = 'variable "aws_secret" {\n  type = string\n  default = env("AWS_SECRET_ACCESS_KEY")\n}\n'
ENV_LINE = 'provisioner "shell" {\n    inline = ["aws configure set secret ${var.aws_secret} --profile p"]\n  }\n'


def test_env_in_a_default_is_a_placeholder_not_its_value(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ENV_SECRET)
    result = translate(home / "cfg", ENV_LINE, variables=ENV_DEFAULT)
    assert result.code == 1, result.text  # a bare template has no secrets: the placeholder must be filled in
    assert_nothing_leaked(result)
    (entry,) = entries(result, "AIB079")
    assert entry["status"] == "dropped" and entry["subject"] == 'environment variable "AWS_SECRET_ACCESS_KEY"'
    assert entry["line"] == 3 and "--allow-env-values" in entry["detail"]
    (step,) = template(result)["properties"]["customize"]
    assert step["inline"] == ["aws configure set secret <AWS_SECRET_ACCESS_KEY> --profile p"]


def test_env_with_arm_is_a_secure_parameter(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ENV_SECRET)
    result = translate(home / "cfg", ENV_LINE, "--arm", variables=ENV_DEFAULT)
    assert result.code == 0, result.text
    assert_nothing_leaked(result)
    (entry,) = entries(result, "AIB079")
    assert entry["status"] == "approximated"
    document = template(result)
    assert document["parameters"]["AWS_SECRET_ACCESS_KEY"]["type"] == "secureString"
    (step,) = document["resources"][0]["properties"]["customize"]
    expected = "[format('aws configure set secret {0} --profile p', parameters('AWS_SECRET_ACCESS_KEY'))]"
    assert step["inline"] == [expected]


def test_allow_env_values_writes_them(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ENV_SECRET)
    result = translate(home / "cfg", ENV_LINE, "--allow-env-values", variables=ENV_DEFAULT)
    assert result.code == 0 and not entries(result, "AIB079"), result.text
    (step,) = template(result)["properties"]["customize"]
    assert step["inline"] == [f"aws configure set secret {ENV_SECRET} --profile p"]


def test_pkr_var_values_are_placeholders(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PKR_VAR_token", ENV_SECRET)
    variables = 'variable "token" {\n  type = string\n  default = "none"\n}\n'
    body = 'provisioner "shell" {\n    inline = ["curl -H \'X-Token: ${var.token}\' https://example.org"]\n  }\n'
    result = translate(home / "cfg", body, variables=variables)
    assert_nothing_leaked(result)
    (entry,) = entries(result, "AIB079")
    assert entry["subject"] == 'environment variable "PKR_VAR_token"' and entry["line"] == 1
    (step,) = template(result)["properties"]["customize"]
    assert step["inline"] == ["curl -H 'X-Token: <PKR_VAR_token>' https://example.org"]


def test_env_in_legacy_json_is_a_placeholder(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ENV_SECRET)
    config = {
        "variables": {"aws_secret": "{{env `AWS_SECRET_ACCESS_KEY`}}"},
        "builders": [{"type": "azure-arm", "os_type": "Linux", "location": "westus", "image_publisher": "a",
                      "image_offer": "b", "image_sku": "c", "managed_image_name": "m",
                      "managed_image_resource_group_name": "rg"}],
        "provisioners": [{"type": "shell", "inline": ["echo {{user `aws_secret`}} > /tmp/k"]}],
    }  # fmt: skip
    (home / "cfg" / "legacy.json").write_text(json.dumps(config, indent=2))
    result = invoke("translate", str(home / "cfg" / "legacy.json"), "--to", "aib", "--format", "json")
    assert_nothing_leaked(result)
    (entry,) = entries(result, "AIB079")
    assert entry["subject"] == 'environment variable "AWS_SECRET_ACCESS_KEY"' and entry["line"] == 3
    (step,) = template(result)["properties"]["customize"]
    assert step["inline"] == ["echo <AWS_SECRET_ACCESS_KEY> > /tmp/k"]


def test_the_flags_belong_to_to_aib(home: Path) -> None:
    for flag in ("--allow-local-files", "--allow-env-values"):
        result = invoke("translate", str(home / "secrets.txt"), "--to", "packer", flag)
        assert result.code == 2 and flag in result.err, result.text
