"""AIB's deprovisioning facts, shared by the provisioner that stages and runs the script and the translators that
write it for Packer: its default scripts (package data) and AIB's message when a customizer removed it."""

from __future__ import annotations

from importlib import resources

from aibx import model

__all__ = ["default_script", "missing_message"]


def missing_message(path: str) -> str:
    """AIB's own wording (from its customization log)."""
    return (
        f"Deprovisioning script [{path}] could not be found. Image build may fail or the VM created from the "
        "Image may not boot. Please make sure the deprovisioning script is not accidentally deleted by a "
        "Customizer in the Template."
    )


def default_script(os_type: model.OsType) -> bytes:
    name = "DeprovisioningScript.ps1" if os_type is model.OsType.WINDOWS else "DeprovisioningScript.sh"
    return (resources.files("aibx") / "data" / name).read_bytes()
