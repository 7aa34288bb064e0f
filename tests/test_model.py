"""The template model built from the valid fixtures: every source, step and distribute type, defaults, OS."""

from __future__ import annotations

import pytest

from aibx import model
from aibx.loader import LoadOptions, load
from tests.conftest import FIXTURES

VALID = FIXTURES / "validate" / "valid"


def template(name: str, **options) -> model.ImageTemplate:
    [doc] = load(str(VALID / name), LoadOptions(**options)).documents
    return model.from_document(doc)


def test_a_linux_template_with_everything():
    tpl = template("linux-2025-10-01.json")
    assert tpl.name == "ubuntu-2204-base" and tpl.location == "westeurope"
    assert tpl.tags == {"team": "platform", "os": "ubuntu"}
    assert tpl.identity and tpl.identity.type == "UserAssigned" and len(tpl.identity.user_assigned_identities) == 1
    src = tpl.source
    assert isinstance(src, model.PlatformImageSource) and src.sku == "22_04-lts-gen2"
    assert src.plan_info == model.PlanInfo("jammy", "ubuntu-pro", "canonical")
    assert [type(s) for s in tpl.customize] == [model.ShellStep, model.ShellStep, model.FileStep, model.ShellStep]
    assert tpl.customize[0].inline == ["sudo apt-get update", "sudo apt-get -y upgrade"]
    assert tpl.customize[1].script_uri.endswith("setup.sh") and len(tpl.customize[1].sha256_checksum) == 64
    assert tpl.customize[2].destination == "/tmp/motd"
    assert tpl.customize[2].path == ("properties", "customize", 2) and tpl.customize[2].label == "motd"
    val = tpl.validate
    assert val and val.continue_distribute_on_failure is False and val.source_validation_only is False
    assert [s.kind for s in val.in_vm_validations] == ["Shell", "File", "Shell"]
    opt = tpl.optimize
    assert opt.vm_boot_state == "Enabled" and opt.workload_state == "Enabled"
    assert opt.workload_script_uri.endswith("workload.sh") and opt.workload_sha256_checksum.startswith("c1c27e")
    managed, gallery, vhd = tpl.distribute
    assert isinstance(managed, model.ManagedImageDistributor) and managed.artifact_tags == {"source": "aibx-fixture"}
    assert isinstance(gallery, model.SharedImageDistributor)
    assert [r.name for r in gallery.target_regions] == ["westeurope", "northeurope"]
    assert gallery.target_regions[0].replica_count == 2 and gallery.target_regions[1].replica_count is None
    assert gallery.versioning.scheme == "Latest" and gallery.versioning.major == 1
    assert gallery.replication_mode == "Shallow" and gallery.exclude_from_latest is False
    assert isinstance(vhd, model.VhdDistributor) and vhd.uri.endswith(".vhd")
    vm = tpl.vm_profile
    assert vm.vm_size == "Standard_D2ds_v5" and vm.os_disk_size_gb == 64 and len(vm.user_assigned_identities) == 1
    assert vm.vnet_config.subnet_id.endswith("/build") and vm.vnet_config.container_instance_subnet_id.endswith("/aci")
    assert tpl.build_timeout_in_minutes == 120 and tpl.effective_build_timeout_minutes == 120
    assert tpl.staging_resource_group.endswith("aib-staging")
    assert tpl.error_handling == model.ErrorHandling("abort", "cleanup")
    assert tpl.auto_run_state == "Disabled" and tpl.managed_resource_tags == {"costCenter": "1234"}
    assert tpl.additional_data_disks == [64]
    assert tpl.os_type is model.OsType.LINUX and "Canonical" in tpl.os_reason
    assert tpl.deprovision_path == model.LINUX_DEPROVISION_PATH


def test_a_windows_template_with_every_windows_step_and_their_defaults():
    tpl = template("windows-2024-02-01.json")
    assert isinstance(tpl.source, model.ManagedImageSource) and tpl.source.image_id.endswith("win2022-base")
    ps, file, install, restart, update, bare_restart = tpl.customize
    assert ps.run_elevated and ps.run_as_system and ps.valid_exit_codes == [0, 3010]
    assert install.effective_valid_exit_codes == [0]
    assert file.destination == "C:\\apps\\agent.msi"
    assert restart.restart_timeout == "10m" and restart.effective_restart_timeout_seconds == 600
    assert bare_restart.restart_command is None
    assert bare_restart.effective_restart_command == model.DEFAULT_RESTART_COMMAND
    assert bare_restart.effective_restart_timeout_seconds == 300 and bare_restart.label == "WindowsRestart #6"
    assert update.filters == ["exclude:$_.Title -like '*Preview*'", "include:$true"]
    assert update.effective_update_limit == 40
    assert tpl.os_type is model.OsType.WINDOWS and tpl.os_reason == "PowerShell customizer"
    assert tpl.deprovision_path == model.WINDOWS_DEPROVISION_PATH
    assert tpl.distribute[0].versioning.scheme == "Source"


@pytest.mark.parametrize(
    ("name", "source", "step_kinds", "distribute"),
    [
        ("preview-2018-02-01.json", model.IsoSource, ["Shell"], ["ManagedImage", "SharedImage"]),
        ("preview-2019-02-01.json", model.ManagedImageSource, ["PowerShell", "WindowsRestart", "PowerShell"], ["VHD"]),
        ("preview-2019-05-01.json", model.SharedImageVersionSource, ["Shell", "File"], ["ManagedImage"]),
        ("preview-2019-05-01-iso.json", model.IsoSource, ["Shell"], ["VHD"]),
        (
            "stable-2020-02-14.json",
            model.PlatformImageSource,
            ["PowerShell", "WindowsRestart", "WindowsUpdate"],
            ["SharedImage"],
        ),
    ],
)
def test_old_api_versions_map_to_the_same_model(name, source, step_kinds, distribute):
    tpl = template(name)
    assert isinstance(tpl.source, source)
    assert [s.kind for s in tpl.customize] == step_kinds
    assert [d.kind for d in tpl.distribute] == distribute


def test_old_spellings_are_read_the_same_way():
    old = template("preview-2018-02-01.json")
    assert old.source.source_uri.endswith("rhel-7.5.iso")  # sourceURI
    assert old.customize[0].script_uri.endswith("setup.sh")  # "shell" with "script"
    assert old.distribute[1].replication_regions == ["westus2", "eastus"]  # "sharedImage"
    assert template("preview-2019-02-01.json").customize[0].script_uri.endswith("install.ps1")


def test_defaults_apply_when_nothing_is_written():
    tpl = template("stable-2023-07-01.json")
    update = tpl.customize[1]
    assert isinstance(update, model.WindowsUpdateStep)
    assert update.search_criteria is None and update.effective_search_criteria == model.DEFAULT_SEARCH_CRITERIA
    assert update.effective_update_limit == model.DEFAULT_UPDATE_LIMIT
    assert template("stable-2021-10-01.json").effective_build_timeout_minutes == model.DEFAULT_BUILD_TIMEOUT_MINUTES


def test_the_os_can_be_overridden():
    [doc] = load(str(VALID / "stable-2022-07-01.json")).documents
    assert model.from_document(doc).os_type is model.OsType.LINUX
    tpl = model.from_document(doc, model.OsType.WINDOWS)
    assert tpl.os_type is model.OsType.WINDOWS and tpl.os_reason == "--os"


def test_unresolved_values_are_kept_in_the_model():
    [doc] = load(str(FIXTURES / "validate" / "quickstart" / "placeholders.json")).documents
    tpl = model.from_document(doc)
    assert isinstance(tpl.location, model.Unresolved)
    assert isinstance(tpl.distribute[0].run_output_name, model.Unresolved)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5m", 300.0),
        ("2h", 7200.0),
        ("90s", 90.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("5 m", None),
        ("", None),
        ("m", None),
    ],
)
def test_parse_duration(text, seconds):
    assert model.parse_duration(text) == seconds
