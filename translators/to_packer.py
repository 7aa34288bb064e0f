"""AIB image template (the model) → a Packer HCL2 build: one ``azure-arm`` source, one ``build``.

The mapping follows docs/translate.md. Every field of the template gets a report entry. What Packer lacks is
written as the closest faithful equivalent (translators/idioms.py) and reported as approximated; what it
cannot express at all is reported as dropped.

A value the template could not resolve (a ``<placeholder>`` or an ARM parameter without a value) becomes a
Packer variable without a default, so ``packer build -var NAME=VALUE`` supplies it. The value of a secure
parameter is never written: every string holding one refers to a variable declared ``sensitive = true`` instead
(translators/secrets.py).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from aibx import model
from aibx.document import Unresolved
from aibx.jsonc import JsonPath
from aibx.plan import redact_uri
from aibx.translators import azure_ids, idioms
from aibx.translators.hcl_writer import Block, Expr, template
from aibx.translators.local_files import LocalFileError, read_local_file
from aibx.translators.report import NOWHERE, Location, Report, Status
from aibx.translators.secrets import Reference, SecretFinder, variable_name

AZURE_PLUGIN = {"source": "github.com/hashicorp/azure", "version": ">= 2.0.0"}
WINDOWS_UPDATE_PLUGIN = {"source": "github.com/rgl/windows-update", "version": ">= 0.14.0"}
# AIB's default build VM sizes (Packer's own default, Standard_A1, is far smaller)
AIB_DEFAULT_VM_SIZE_GEN1 = "Standard_D1_v2"
AIB_DEFAULT_VM_SIZE_GEN2 = "Standard_D2ds_v4"
VALIDATION_MARK = "AIB in-VM validation"
VALIDATION_COMMENT = (
    f"{VALIDATION_MARK}: AIB runs it on a fresh VM created from the image;\n"
    "Packer runs it here, on the build VM, before deprovisioning."
)
STAGE_COMMENT = "AIB stages its default deprovision script before the customizers; a customizer may replace it."
DEPROVISION_COMMENT = "AIB's implicit last step: deprovision (runs the staged script, or a customizer's override)."
# the variable naming the managed image written beside a gallery output (gallery_companion_image); the Packer →
# AIB translation recognises it
GALLERY_STAGING_VARIABLE = "gallery_staging_image_name"
STAGE_NAME = "aibx: stage AIB's default deprovision script"
DEPROVISION_NAME = "aibx: deprovision (AIB's implicit last step)"
_PLACEHOLDER = re.compile(r"<([A-Za-z][A-Za-z0-9_.\-]*)>")
_ARM_PARAMETER = re.compile(r"\[\s*parameters\(\s*'([A-Za-z0-9_.\-]+)'\s*\)\s*\]", re.IGNORECASE)
_NOT_IDENTIFIER = re.compile(r"[^A-Za-z0-9_-]")
# what a source's output is made of: another output gets a source of its own without these (distribute())
OUTPUT_ATTRIBUTES = {
    "shared_image_gallery_replica_count",
    "managed_image_name",
    "managed_image_resource_group_name",
    "shared_gallery_image_version_exclude_from_latest",
    "storage_account",
    "resource_group_name",
    "capture_container_name",
    "capture_name_prefix",
}
_CAPTURE_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-.]{0,23}")
# stands for an open URI in the download idioms (the '?' makes the quoting functions quote it)
OPEN_URI = "https://aibx.invalid/open?uri"
OPEN_DESTINATION = "/aibx-open-destination?"
# how an ID the template leaves wholly open is read: one placeholder (so one Packer variable) per part
_SUB = "/subscriptions/<subscription_id>/resourceGroups"
OPEN_SOURCE_IMAGE = f"{_SUB}/<source_image_resource_group>/providers/Microsoft.Compute/images/<source_image>"
OPEN_SOURCE_VERSION = (
    f"{_SUB}/<source_resource_group>/providers/Microsoft.Compute/galleries/<source_gallery>/images/<source_image>"
    "/versions/<source_image_version>"
)
OPEN_SUBNET = (
    f"{_SUB}/<virtual_network_resource_group_name>/providers/Microsoft.Network/virtualNetworks/"
    "<virtual_network_name>/subnets/<virtual_network_subnet_name>"
)
OPEN_MANAGED_IMAGE = (
    f"{_SUB}/<managed_image_resource_group_name>/providers/Microsoft.Compute/images/<managed_image_name>"
)
OPEN_GALLERY_IMAGE = (
    f"{_SUB}/<gallery_resource_group>/providers/Microsoft.Compute/galleries/<gallery_name>/images/<gallery_image_name>"
)
OPEN_STAGING_GROUP = "/subscriptions/<subscription_id>/resourceGroups/<build_resource_group_name>"


def source_name(tpl: model.ImageTemplate) -> str:
    raw = tpl.name or (Path(tpl.file).stem if tpl.file else "image")
    name = _NOT_IDENTIFIER.sub("_", raw)
    return name if name[:1].isalpha() or name[:1] == "_" else f"img_{name}"


class ToPacker:
    """One translation. ``blocks()`` returns the HCL document; ``report`` says what became of each field."""

    def __init__(self, tpl: model.ImageTemplate, report: Report, output_dir: Path | None = None) -> None:
        self.tpl = tpl
        self.report = report
        self.output_dir = output_dir or Path.cwd()
        self.windows = tpl.os_type is model.OsType.WINDOWS
        self.name = source_name(tpl)
        self.variables: dict[str, Block] = {}
        self.plugins: dict[str, dict[str, str]] = {"azure": AZURE_PLUGIN}
        self.source = Block("source", ["azure-arm", self.name])
        self.build = Block("build")
        self.extra_outputs: list[Block] = []  # outputs for sources of their own (distribute())
        self.notes: list[str] = []  # comments for the build block (CLI options Packer needs)
        self.subscription: str | Expr | None = None
        self.secure_parameters: set[str] = set()
        self.secret_variables: dict[str, str] = {}  # where a secret came from → its variable's name
        if tpl.document is not None:
            report.secrets.update(tpl.document.secrets)
            report.secret_sources.update(tpl.document.secret_names)
            self.secure_parameters = set(tpl.document.secure_parameters)
            report.secure_names.update(self.secure_parameters)
        self.secret_finder = SecretFinder(report.secret_sources)

    # ------------------------------------------------------------------------------------------- helpers
    def loc(self, path: JsonPath) -> Location:
        doc = self.tpl.document
        if doc is None:
            return NOWHERE
        line, col = doc.source_map.locate(doc.full_path(path))
        return Location(doc.file, line, col)

    @staticmethod
    def subject(path: JsonPath) -> str:
        from aibx.diagnostics import format_path

        return format_path(path)

    def variable(
        self, name: str, description: str, default: object = None, type_: str = "string", sensitive: bool = False
    ) -> Expr:
        if name not in self.variables:
            block = Block("variable", [name])
            block.set("type", Expr(type_))
            block.set("default", default)
            block.set("description", description)
            if sensitive:
                block.set("sensitive", True)
            self.variables[name] = block
        return Expr(f"var.{name}")

    def secret_variable(self, source: str) -> Expr:
        """The sensitive variable (no default) standing for the secret from ``source``, declared and reported
        once."""
        name = self.secret_variables.get(source)
        if name is None:
            name = variable_name(source)
            while name in self.variables:
                name += "_secret"
            self.secret_variables[source] = name
            parameter = source.split(".", 1)[0].split("[", 1)[0]
            self.variable(
                name,
                f"secret: value of the AIB template's secure parameter {source}; pass it with -var {name}=VALUE "
                f"or the environment variable PKR_VAR_{name}",
                sensitive=True,
            )
            self.report.add(
                Status.APPROXIMATED,
                f"parameters.{source} (secure)",
                f"never written: var.{name}, declared sensitive without a default; pass it when building: "
                f"packer build -var {name}=VALUE, or PKR_VAR_{name} in the environment",
                self.parameter_loc(parameter),
                code="AIB077",
            )
        return Expr(f"var.{name}")

    def parameter_loc(self, name: str) -> Location:
        doc = self.tpl.document
        if doc is None or not doc.in_deployment:
            return NOWHERE
        line, col = doc.source_map.locate(("parameters", name), key=True)
        return Location(doc.file, line, col) if line else NOWHERE

    def protect(self, value: object) -> object:
        """``value`` with every secret in its strings replaced by a reference to its sensitive variable."""
        if isinstance(value, str):
            parts = self.secret_finder.split(value)
            if len(parts) == 1 and isinstance(parts[0], str):
                return value
            return template([self.secret_variable(p.source) if isinstance(p, Reference) else p for p in parts])
        if isinstance(value, list):
            return [self.protect(v) for v in value]
        if isinstance(value, dict):
            return {k: self.protect(v) for k, v in value.items()}
        return value

    def protect_block(self, block: Block) -> None:
        block.attributes = {k: self.protect(v) for k, v in block.attributes.items()}
        for child in block.blocks:
            self.protect_block(child)

    def text(self, value: model.Text | None, fallback_variable: str) -> str | Expr | None:
        """A template value for HCL: literal text, or variables where the template left a value open."""
        if value is None or isinstance(value, str):
            return value
        m = _ARM_PARAMETER.fullmatch(value.text.strip())
        if m:
            secure = m.group(1) in self.secure_parameters
            return self.variable(
                m.group(1),
                f"value of the AIB template's {'secure ' * secure}parameter {m.group(1)} ({value.reason})",
                sensitive=secure,
            )
        if _PLACEHOLDER.search(value.text):
            parts: list[str | Expr] = []
            for i, piece in enumerate(_PLACEHOLDER.split(value.text)):
                parts.append(
                    self.variable(piece, f"value of the AIB template's placeholder <{piece}>") if i % 2 else piece
                )
            return template(parts)
        return self.variable(fallback_variable, f"{value.reason} (AIB template value {value.text})")

    def text_parts(self, value: Unresolved, fallback_variable: str) -> list[str | Expr]:
        """An open value as literal text and variables (a ``<placeholder>`` or a parameter each a variable)."""
        out = self.text(value, fallback_variable)
        if isinstance(out, Expr) and out.text.startswith('"'):
            parts: list[str | Expr] = []
            for i, piece in enumerate(_PLACEHOLDER.split(value.text)):
                parts.append(Expr(f"var.{piece}") if i % 2 else piece)
            return parts
        return [out] if out is not None else []

    @staticmethod
    def open_lines(lines: list[str], stand_ins: dict[str, list[str | Expr]]) -> list[str | Expr]:
        """``lines`` written with stand-ins for open values (OPEN_URI, ...), each replaced by its value's parts."""
        pattern = re.compile("|".join(re.escape(k) for k in stand_ins))
        out: list[str | Expr] = []
        for line in lines:
            joined: list[str | Expr] = []
            last = 0
            for m in pattern.finditer(line):
                joined += [line[last : m.start()], *stand_ins[m.group()]]
                last = m.end()
            out.append(template([*joined, line[last:]]))
        return out

    def id_part(self, value: str, unresolved: Unresolved | None, fallback: str) -> str | Expr:
        """One segment of a resource ID; segments of an unresolved ID may hold placeholders."""
        if unresolved is None or not _PLACEHOLDER.search(value):
            return value
        return self.text(Unresolved(value, unresolved.reason), fallback)  # type: ignore[return-value]

    def parse_id(
        self, value: model.Text | None, open_shape: str | None = None, path: JsonPath = ()
    ) -> tuple[azure_ids.ResourceId | None, Unresolved | None]:
        """The parts of a resource ID. An ID the template left wholly open (``<imageId>``, a parameter without a
        value, an expression only Azure can evaluate) is read as ``open_shape``, an ID whose parts are
        placeholders, so each part becomes a Packer variable."""
        if value is None:
            return None, None
        text = value.text if isinstance(value, Unresolved) else value
        rid = azure_ids.parse(text)
        if rid is None and isinstance(value, Unresolved) and open_shape is not None:
            self.report.approximated(
                self.subject(path) if path else value.text,
                f"the template leaves this resource ID open ({value.reason}): its parts are Packer variables",
                self.loc(path) if path else NOWHERE,
            )
            return azure_ids.parse(open_shape), Unresolved(open_shape, value.reason)
        return rid, value if isinstance(value, Unresolved) else None

    def use_subscription(self, value: str | Expr) -> str | Expr:
        """The build's subscription: the first one found; the same value later refers to var.subscription_id."""
        if self.subscription is None:
            self.subscription = value
        if value == self.subscription:
            return Expr("var.subscription_id")
        return value

    # ------------------------------------------------------------------------------------------- document
    def blocks(self) -> list[Block]:
        self.top_level()
        self.source_image()
        self.vm_profile()
        self.distribute()
        self.tags()
        self.connection()
        self.provisioners()
        self.check_buildable()
        sources = [self.source, *self.output_sources()]
        sub = self.subscription
        if isinstance(sub, Expr):  # the subscription is itself a variable: use it directly
            for source in sources:
                source.attributes["subscription_id"] = sub
                self.replace_subscription_refs(source, sub)
        else:
            self.variable(
                "subscription_id",
                "Azure subscription to build in (AIB uses the template's)",
                default=sub,
            )
        self.variable(
            "use_azure_cli_auth",
            "authenticate as the Azure CLI's signed-in account; set false and give client_id/client_secret "
            "to use a service principal",
            default=True,
            type_="bool",
        )
        self.build.attributes = {"name": self.name, "sources": [f"source.azure-arm.{s.labels[1]}" for s in sources]}
        if self.secret_finder:
            for source in sources:
                self.protect_block(source)
            self.protect_block(self.build)
        if self.notes:
            self.build.comment = "\n".join(self.notes)
        packer = Block("packer")
        packer.add(Block("required_plugins", attributes=dict(self.plugins)))
        ordered_vars = [self.variables[k] for k in sorted(self.variables)]
        return [packer, *ordered_vars, *sources, self.build]

    def check_buildable(self) -> None:
        """Packer refuses an azure-arm source without an image to start from or an output to write: such a
        translation is an error (exit 2, nothing written), never a file that only looks like a build."""
        src = self.source
        has_image = "image_publisher" in src.attributes or "custom_managed_image_name" in src.attributes
        has_image = has_image or any(b.type == "shared_image_gallery" for b in src.blocks)
        has_output = "managed_image_name" in src.attributes or "capture_container_name" in src.attributes
        has_output = has_output or any(b.type == "shared_image_gallery_destination" for b in src.blocks)
        path = ("properties", "source")
        if not has_image:
            why = next((e.detail for e in self.report.entries if e.subject.startswith("properties.source")), "")
            self.report.error(
                "AIB071",
                "Packer needs an image to start from, and the template's source cannot be one"
                + (f" ({why})" if why else " (there is none)")
                + ": nothing was written",
                self.loc(path if self.tpl.source else ("properties",)),
                self.subject(path),
            )
        if not has_output:
            path = ("properties", "distribute")
            self.report.error(
                "AIB071",
                "Packer needs an output (a managed image, a gallery image version or a VHD), and none of the "
                "template's distribute targets can be one: nothing was written",
                self.loc(path if self.tpl.distribute else ("properties",)),
                self.subject(path),
            )

    @staticmethod
    def replace_subscription_refs(source: Block, sub: Expr) -> None:
        for block in [source, *source.blocks]:
            for k, v in block.attributes.items():
                if v == Expr("var.subscription_id"):
                    block.attributes[k] = sub

    def top_level(self) -> None:
        tpl, r, src = self.tpl, self.report, self.source
        src.set("use_azure_cli_auth", Expr("var.use_azure_cli_auth"))
        src.set("subscription_id", Expr("var.subscription_id"))
        if tpl.staging_resource_group is not None:
            path = ("properties", "stagingResourceGroup")
            rid, unresolved = self.parse_id(tpl.staging_resource_group, OPEN_STAGING_GROUP, path)
            if rid and rid.resource_group:
                src.set(
                    "build_resource_group_name",
                    self.id_part(rid.resource_group, unresolved, "build_resource_group_name"),
                )
                r.approximated(
                    self.subject(path),
                    "build_resource_group_name: Packer needs the group to exist and never deletes it; "
                    "AIB creates it (or takes an empty one) and deletes it with the template",
                    self.loc(path),
                )
            else:
                r.dropped(self.subject(path), "not a resource group ID", self.loc(path))
        if tpl.location is not None:
            if "build_resource_group_name" in src.attributes:
                r.approximated(
                    "location",
                    "Packer takes either location or build_resource_group_name: the build runs in the "
                    "staging group's region",
                    self.loc(("location",)),
                )
            else:
                src.set("location", self.text(tpl.location, "location"))
                r.mapped("location", "location", self.loc(("location",)))
        if tpl.tags:
            r.not_applicable(
                "tags",
                "tags of the image-template resource (metadata, not part of the image or the build): Packer has no "
                "template resource",
                self.loc(("tags",)),
            )
        if tpl.identity is not None:
            r.approximated(
                "identity",
                "Packer authenticates as whoever runs it (use_azure_cli_auth, or client_id/client_secret): "
                "give that account the roles the template's identity has",
                self.loc(("identity",)),
            )
        if tpl.build_timeout_in_minutes is not None:
            minutes = tpl.effective_build_timeout_minutes
            self.notes.append(
                f"AIB buildTimeoutInMinutes: Packer has no build timeout; run it as `timeout {minutes}m packer build .`"
            )
            r.approximated(
                "properties.buildTimeoutInMinutes",
                f"Packer has no build timeout: run `timeout {minutes}m packer build .` (noted on the build block)",
                self.loc(("properties", "buildTimeoutInMinutes")),
            )
        self._service_options()

    def _service_options(self) -> None:
        """errorHandling, autoRun, optimize and validate: what the AIB service does around a build."""
        tpl, r = self.tpl, self.report
        eh = tpl.error_handling
        if eh is not None:
            path = ("properties", "errorHandling")
            values = {v.lower() for v in (eh.on_customizer_error, eh.on_validation_error) if isinstance(v, str)}
            if values <= {"cleanup"}:
                r.mapped(self.subject(path), "cleanup is what packer build does on error", self.loc(path))
            else:
                self.notes.append("AIB errorHandling abort: run `packer build -on-error=abort .` to keep the build VM")
                r.approximated(
                    self.subject(path),
                    "a command-line option in Packer: packer build -on-error=abort (noted on the build block)",
                    self.loc(path),
                )
        if tpl.auto_run_state is not None:
            path = ("properties", "autoRun")
            if str(tpl.auto_run_state).lower() == "enabled":
                r.approximated(
                    self.subject(path),
                    "AIB builds when the template is created; with Packer, run packer build",
                    self.loc(path),
                )
            else:
                r.mapped(self.subject(path), "disabled: a build runs when you run packer build", self.loc(path))
        if tpl.optimize is not None:
            path = ("properties", "optimize")
            enabled = [
                v for v in (tpl.optimize.vm_boot_state, tpl.optimize.workload_state) if str(v).lower() == "enabled"
            ]
            if enabled:
                r.dropped(self.subject(path), "VM boot optimization is an AIB service feature", self.loc(path))
            else:
                r.mapped(self.subject(path), "disabled: nothing to do", self.loc(path))
        val = tpl.validate
        if val is not None:
            path = ("properties", "validate")
            if val.source_validation_only:
                r.dropped(
                    self.subject((*path, "sourceValidationOnly")),
                    "Packer always builds; validating the source image alone is an AIB feature",
                    self.loc((*path, "sourceValidationOnly")),
                )
            if val.continue_distribute_on_failure:
                r.dropped(
                    self.subject((*path, "continueDistributeOnFailure")),
                    "a failing provisioner always fails a Packer build: nothing is distributed",
                    self.loc((*path, "continueDistributeOnFailure")),
                )

    def source_image(self) -> None:
        tpl, r, src = self.tpl, self.report, self.source
        s = tpl.source
        path = s.path if s else ("properties", "source")
        src.set("os_type", tpl.os_type.value)
        if isinstance(s, model.PlatformImageSource):
            src.set("image_publisher", self.text(s.publisher, "image_publisher"))
            src.set("image_offer", self.text(s.offer, "image_offer"))
            src.set("image_sku", self.text(s.sku, "image_sku"))
            src.set("image_version", self.text(s.version, "image_version") or "latest")
            detail = "image_publisher, image_offer, image_sku, image_version"
            if s.plan_info is not None:
                plan = src.add(Block("plan_info"))
                plan.set("plan_name", self.text(s.plan_info.plan_name, "plan_name"))
                plan.set("plan_product", self.text(s.plan_info.plan_product, "plan_product"))
                plan.set("plan_publisher", self.text(s.plan_info.plan_publisher, "plan_publisher"))
                detail += ", plan_info"
            r.mapped(self.subject(path) + " (PlatformImage)", detail, self.loc(path))
        elif isinstance(s, model.ManagedImageSource):
            rid, unresolved = self.parse_id(s.image_id, OPEN_SOURCE_IMAGE, (*path, "imageId"))
            if rid and rid.resource_group and rid.get("images") and rid.subscription:
                self.use_subscription(self.id_part(rid.subscription, unresolved, "subscription_id"))
                src.set("custom_managed_image_name", self.id_part(rid.get("images") or "", unresolved, "source_image"))
                src.set(
                    "custom_managed_image_resource_group_name",
                    self.id_part(rid.resource_group, unresolved, "source_image_resource_group"),
                )
                r.approximated(
                    self.subject(path) + " (ManagedImage)",
                    "custom_managed_image_name and _resource_group_name: Packer looks the image up in the build "
                    "subscription, and needs a managed image output with a managed image source",
                    self.loc(path),
                )
            else:
                r.dropped(self.subject(path) + " (ManagedImage)", "imageId is not a managed image ID", self.loc(path))
        elif isinstance(s, model.SharedImageVersionSource):
            rid, unresolved = self.parse_id(s.image_version_id, OPEN_SOURCE_VERSION, (*path, "imageVersionId"))
            if rid and rid.subscription and rid.resource_group and rid.get("galleries") and rid.get("images"):
                sig = src.add(Block("shared_image_gallery"))
                sig.set("subscription", self.id_part(rid.subscription, unresolved, "source_subscription"))
                sig.set("resource_group", self.id_part(rid.resource_group, unresolved, "source_resource_group"))
                sig.set("gallery_name", self.id_part(rid.get("galleries") or "", unresolved, "source_gallery"))
                sig.set("image_name", self.id_part(rid.get("images") or "", unresolved, "source_image"))
                version = rid.get("versions")
                sig.set("image_version", self.id_part(version, unresolved, "source_image_version") if version else None)
                r.mapped(self.subject(path) + " (SharedImageVersion)", "shared_image_gallery", self.loc(path))
            else:
                r.dropped(
                    self.subject(path) + " (SharedImageVersion)",
                    "imageVersionId is not a gallery image version ID",
                    self.loc(path),
                )
        elif isinstance(s, model.IsoSource):
            r.dropped(self.subject(path) + " (ISO)", "the azure-arm builder cannot start from an ISO", self.loc(path))
        elif isinstance(s, model.UnknownSource):
            r.dropped(self.subject(path), f"unknown source type {s.type_name!r}", self.loc(path))
        else:
            r.dropped(self.subject(path), "the template has no source", self.loc(path))

    def vm_profile(self) -> None:
        tpl, r, src = self.tpl, self.report, self.source
        vm = tpl.vm_profile
        base = ("properties", "vmProfile")
        size = vm.vm_size if vm else None
        if size:
            src.set("vm_size", self.text(size, "vm_size"))
            r.mapped(self.subject((*base, "vmSize")), "vm_size", self.loc((*base, "vmSize")))
        else:
            default, why = self.default_vm_size()
            src.set("vm_size", default)
            r.approximated(
                self.subject((*base, "vmSize")),
                f"not given: vm_size = {default}, AIB's default for {why} (Packer's own default is Standard_A1)",
                self.loc(base),
            )
        if tpl.additional_data_disks is not None:
            path = ("properties", "additionalDataDisks")
            sizes = [s for s in tpl.additional_data_disks if s is not None]
            src.set("disk_additional_size", sizes)
            r.mapped(self.subject(path), "disk_additional_size", self.loc(path))
        if vm is None:
            return
        if vm.os_disk_size_gb is not None:
            if vm.os_disk_size_gb > 0:
                src.set("os_disk_size_gb", vm.os_disk_size_gb)
            r.mapped(self.subject((*base, "osDiskSizeGB")), "os_disk_size_gb", self.loc((*base, "osDiskSizeGB")))
        if vm.user_assigned_identities:
            src.set(
                "user_assigned_managed_identities",
                [self.text(i, "vm_identity") for i in vm.user_assigned_identities],
            )
            r.mapped(
                self.subject((*base, "userAssignedIdentities")),
                "user_assigned_managed_identities",
                self.loc((*base, "userAssignedIdentities")),
            )
        vnet = vm.vnet_config
        if vnet is None:
            return
        vpath = (*base, "vnetConfig")
        if vnet.subnet_id is not None:
            rid, unresolved = self.parse_id(vnet.subnet_id, OPEN_SUBNET, (*vpath, "subnetId"))
            if rid and rid.resource_group and rid.get("virtualNetworks") and rid.get("subnets"):
                src.set(
                    "virtual_network_name",
                    self.id_part(rid.get("virtualNetworks") or "", unresolved, "virtual_network_name"),
                )
                src.set(
                    "virtual_network_subnet_name",
                    self.id_part(rid.get("subnets") or "", unresolved, "virtual_network_subnet_name"),
                )
                src.set(
                    "virtual_network_resource_group_name",
                    self.id_part(rid.resource_group, unresolved, "virtual_network_resource_group_name"),
                )
                r.approximated(
                    self.subject((*vpath, "subnetId")),
                    "virtual_network_name, _subnet_name, _resource_group_name: the build VM gets no public IP, so "
                    "Packer must run where it can reach the subnet (AIB uses a proxy VM or container)",
                    self.loc((*vpath, "subnetId")),
                )
            else:
                r.dropped(self.subject((*vpath, "subnetId")), "not a subnet ID", self.loc((*vpath, "subnetId")))
        for attr, key in (
            ("proxy_vm_size", "proxyVmSize"),
            ("container_instance_subnet_id", "containerInstanceSubnetId"),
        ):
            if getattr(vnet, attr) is not None:
                r.approximated(
                    self.subject((*vpath, key)),
                    "AIB's way into a private subnet; Packer connects to the build VM directly",
                    self.loc((*vpath, key)),
                )

    def default_vm_size(self) -> tuple[str, str]:
        s = self.tpl.source
        sku = s.sku if isinstance(s, model.PlatformImageSource) and isinstance(s.sku, str) else ""
        if re.search(r"gen2|-g2$|g2$", sku.lower()):
            return AIB_DEFAULT_VM_SIZE_GEN2, f"a Gen2 image (sku {sku})"
        return AIB_DEFAULT_VM_SIZE_GEN1, "a Gen1 image"

    def tags(self) -> None:
        tpl, r = self.tpl, self.report
        merged: dict[str, str | Expr] = {}
        sources: list[tuple[JsonPath, dict[str, model.Text]]] = []
        if tpl.managed_resource_tags:
            sources.append((("properties", "managedResourceTags"), tpl.managed_resource_tags))
        for d in tpl.distribute:
            if d.artifact_tags:
                sources.append(((*d.path, "artifactTags"), d.artifact_tags))
        for path, tags in sources:
            conflicts = []
            for k, v in tags.items():
                value = self.text(v, "tag_" + _NOT_IDENTIFIER.sub("_", k))
                if k in merged and merged[k] != value:
                    conflicts.append(k)
                    continue
                merged[k] = value  # type: ignore[assignment]
            how = (
                "azure_tags, which Packer puts on the image and on every temporary resource"
                if "managedResourceTags" not in path
                else "azure_tags, which Packer puts on every temporary resource and on the image"
            )
            if conflicts:
                r.approximated(
                    self.subject(path),
                    f"{how}; Packer has one set of tags, so {', '.join(conflicts)} keep the first value",
                    self.loc(path),
                )
            else:
                r.approximated(self.subject(path), how, self.loc(path))
        if merged:
            self.source.set("azure_tags", merged)

    def connection(self) -> None:
        src = self.source
        if self.windows:
            src.set("communicator", "winrm")
            src.set("winrm_use_ssl", True)
            src.set("winrm_insecure", True)
            src.set("winrm_timeout", "20m")
            src.set("winrm_username", "packer")
        else:
            src.set("communicator", "ssh")
        self.report.mapped(
            "operating system",
            f"os_type = {self.tpl.os_type.value} ({self.tpl.os_reason}), communicator "
            + ("winrm over HTTPS" if self.windows else "ssh"),
        )

    # ------------------------------------------------------------------------------------------- distribute
    def distribute(self) -> None:
        """The outputs. One azure-arm source writes one managed image and one gallery version, or one VHD: the
        others get a source of their own in the same build (self.extra_outputs, made into sources by
        output_sources())."""
        r = self.report
        groups: list[dict[str, model.Distributor]] = []
        for d in self.tpl.distribute:
            label = f"{self.subject(d.path)} ({d.kind or getattr(d, 'type_name', '?')})"
            if isinstance(d, model.UnknownDistributor):
                r.dropped(label, f"unknown distribute type {d.type_name!r}", self.loc(d.path))
                continue
            if isinstance(d, model.VhdDistributor) and isinstance(
                self.tpl.source, (model.ManagedImageSource, model.SharedImageVersionSource)
            ):
                r.dropped(
                    label,
                    "Packer's azure-arm builder writes a VHD only from a platform image (or a VHD), not from a "
                    "managed image or gallery version: write a managed image and export its disk (az disk create "
                    "--source IMAGE, then az disk grant-access)",
                    self.loc(d.path),
                )
                continue
            index = next((i for i, g in enumerate(groups) if _fits(g, d)), len(groups))
            main = self.source
            if index:
                while len(self.extra_outputs) < index:
                    taken = {self.name, *(b.labels[1] for b in self.extra_outputs)}
                    name = f"{self.name}_{d.kind.lower()}"
                    name = (
                        next(f"{name}_{n}" for n in range(2, 100) if f"{name}_{n}" not in taken)
                        if name in taken
                        else name
                    )
                    self.extra_outputs.append(Block("source", ["azure-arm", name]))
                self.source = self.extra_outputs[index - 1]
            try:
                ok = self.output(d, label)
            finally:
                self.source = main
            if ok:
                if index == len(groups):
                    groups.append({})
                groups[index][d.kind] = d
                if index:
                    name = self.extra_outputs[index - 1].labels[1]
                    r.approximated(
                        label + " (source)",
                        f"one azure-arm source writes one managed image and one gallery version, or one VHD: this "
                        f"output gets a source of its own, {name}, in the same build; Packer runs the build once "
                        "per source, on a VM of its own",
                        self.loc(d.path),
                    )
            elif index and index == len(groups):
                self.extra_outputs.pop()  # the source made for it stays empty
            if d.run_output_name is not None:
                r.approximated(
                    self.subject((*d.path, "runOutputName")),
                    "Packer has no run outputs: it prints the artifact ID (a manifest post-processor records it)",
                    self.loc((*d.path, "runOutputName")),
                )
        for source in [self.source, *self.extra_outputs]:
            self.gallery_companion_image(source)
        if not self.tpl.distribute:
            r.dropped("properties.distribute", "the template has no distribute target", self.loc(("properties",)))

    def gallery_companion_image(self, source: Block) -> None:
        """A gallery version alone is an output only for the azure plugin >= 1.4; before it (the builder inside
        Packer <= 1.7) the version is published from a managed image. So a source writing a gallery version and
        no managed image also writes one, in the gallery's resource group, that any Packer accepts."""
        dest = next((b for b in source.blocks if b.type == "shared_image_gallery_destination"), None)
        if dest is None or "managed_image_name" in source.attributes:
            return
        name = self.variable(
            GALLERY_STAGING_VARIABLE,
            "managed image Packer publishes the gallery version from (azure plugin < 1.4 needs one)",
            default=f"{self.name}-gallery-staging"[:80],
        )
        source.set("managed_image_name", name)
        source.set("managed_image_resource_group_name", dest.attributes.get("resource_group"))
        self.report.approximated(
            f"shared_image_gallery_destination ({source.labels[1]})",
            "also a managed image, var.gallery_staging_image_name in the gallery's resource group: the azure-arm "
            "builder before plugin 1.4 (Packer <= 1.7) publishes a gallery version from a managed image; with a "
            "newer plugin the two lines may be removed",
        )

    def output(self, d: model.Distributor, label: str) -> bool:
        if isinstance(d, model.ManagedImageDistributor):
            return self.managed_image(d, label)
        if isinstance(d, model.SharedImageDistributor):
            return self.shared_image(d, label)
        if isinstance(d, model.VhdDistributor):
            return self.vhd(d, label)
        return False

    def output_sources(self) -> list[Block]:
        """One more source per extra output: the main source's settings with that output instead of its own."""
        out: list[Block] = []
        for extra in self.extra_outputs:
            block = Block("source", list(extra.labels))
            block.attributes = {k: v for k, v in self.source.attributes.items() if k not in OUTPUT_ATTRIBUTES}
            block.attributes.update(extra.attributes)
            block.blocks = [
                b for b in self.source.blocks if b.type != "shared_image_gallery_destination"
            ] + extra.blocks
            out.append(block)
        return out

    def managed_image(self, d: model.ManagedImageDistributor, label: str) -> bool:
        r, src = self.report, self.source
        rid, unresolved = self.parse_id(d.image_id, OPEN_MANAGED_IMAGE, (*d.path, "imageId"))
        if not (rid and rid.subscription and rid.resource_group and rid.get("images")):
            r.dropped(label, "imageId is not a managed image ID", self.loc(d.path))
            return False
        self.use_subscription(self.id_part(rid.subscription, unresolved, "subscription_id"))
        src.set("managed_image_name", self.id_part(rid.get("images") or "", unresolved, "managed_image_name"))
        src.set(
            "managed_image_resource_group_name",
            self.id_part(rid.resource_group, unresolved, "managed_image_resource_group_name"),
        )
        r.mapped(label, "managed_image_name, managed_image_resource_group_name", self.loc(d.path))
        if d.location is not None and d.location != self.tpl.location:
            r.dropped(
                self.subject((*d.path, "location")),
                "Packer creates the managed image in the build region; copy it to another region afterwards",
                self.loc((*d.path, "location")),
            )
        return True

    def shared_image(self, d: model.SharedImageDistributor, label: str) -> bool:
        r, src = self.report, self.source
        rid, unresolved = self.parse_id(d.gallery_image_id, OPEN_GALLERY_IMAGE, (*d.path, "galleryImageId"))
        if not (rid and rid.subscription and rid.resource_group and rid.get("galleries") and rid.get("images")):
            r.dropped(label, "galleryImageId is not a gallery image ID", self.loc(d.path))
            return False
        dest = src.add(Block("shared_image_gallery_destination"))
        sub = self.use_subscription(self.id_part(rid.subscription, unresolved, "subscription_id"))
        dest.set("subscription", sub)
        dest.set("resource_group", self.id_part(rid.resource_group, unresolved, "gallery_resource_group"))
        dest.set("gallery_name", self.id_part(rid.get("galleries") or "", unresolved, "gallery_name"))
        dest.set("image_name", self.id_part(rid.get("images") or "", unresolved, "gallery_image_name"))
        version = rid.get("versions")
        if version:
            dest.set("image_version", self.id_part(version, unresolved, "image_version"))
            r.mapped(label, "shared_image_gallery_destination", self.loc(d.path))
        else:
            scheme = ""
            if d.versioning is not None:
                scheme = f" (versioning scheme {d.versioning.scheme or 'Latest'}"
                scheme += f", major {d.versioning.major})" if d.versioning.major is not None else ")"
            dest.set(
                "image_version",
                self.variable(
                    "image_version",
                    "version of the gallery image to create, Major.Minor.Patch: AIB picks the next one itself" + scheme,
                ),
            )
            r.approximated(
                label,
                "shared_image_gallery_destination; AIB picks the next version itself, Packer needs one: "
                "variable image_version",
                self.loc(d.path),
            )
            if d.versioning is not None:
                r.approximated(
                    self.subject((*d.path, "versioning")),
                    "Packer does not number versions: pass -var image_version=X.Y.Z",
                    self.loc((*d.path, "versioning")),
                )
        self.gallery_replication(d, dest)
        if d.exclude_from_latest is not None:
            src.set("shared_gallery_image_version_exclude_from_latest", d.exclude_from_latest)
            r.mapped(
                self.subject((*d.path, "excludeFromLatest")),
                "shared_gallery_image_version_exclude_from_latest",
                self.loc((*d.path, "excludeFromLatest")),
            )
        if d.replication_mode is not None:
            shallow = str(d.replication_mode).lower() == "shallow"
            if shallow:
                dest.set("use_shallow_replication", True)
            r.mapped(
                self.subject((*d.path, "replicationMode")),
                "use_shallow_replication" if shallow else "full replication, Packer's default",
                self.loc((*d.path, "replicationMode")),
            )
        return True

    def gallery_replication(self, d: model.SharedImageDistributor, dest: Block) -> None:
        """Where the gallery version is replicated: replication_regions, target_region blocks, storage type."""
        r = self.report
        if not d.replication_regions and not d.target_regions and self.tpl.location is not None:
            dest.set("replication_regions", [self.text(self.tpl.location, "location")])
            r.approximated(
                self.subject((*d.path, "replicationRegions")),
                "none given: AIB replicates to the template's location, written as replication_regions (Packer "
                "before azure plugin 2 needs it)",
                self.loc(d.path),
            )
        elif d.replication_regions is not None:
            dest.set("replication_regions", [self.text(x, "replication_region") for x in d.replication_regions])
            r.mapped(
                self.subject((*d.path, "replicationRegions")),
                "replication_regions",
                self.loc((*d.path, "replicationRegions")),
            )
        if d.storage_account_type is not None:
            if str(d.storage_account_type).lower() != "standard_lrs":  # Packer's default, and AIB's
                dest.set("storage_account_type", self.text(d.storage_account_type, "storage_account_type"))
            r.mapped(
                self.subject((*d.path, "storageAccountType")),
                "storage_account_type",
                self.loc((*d.path, "storageAccountType")),
            )
        if d.target_regions and self.uniform_regions(d, dest):
            pass
        elif d.target_regions is not None:
            types = {str(t.storage_account_type) for t in d.target_regions if t.storage_account_type is not None}
            for t in d.target_regions:
                region = dest.add(Block("target_region"))
                region.set("name", self.region_name(t))
                region.set("replicas", t.replica_count)
            tpath = (*d.path, "targetRegions")
            if not types:
                r.mapped(self.subject(tpath), "target_region blocks", self.loc(tpath))
            elif len(types) == 1 and all(t.storage_account_type is not None for t in d.target_regions):
                dest.set("storage_account_type", types.pop())
                r.approximated(
                    self.subject(tpath),
                    "target_region blocks; Packer has one storage_account_type for all regions (the same here)",
                    self.loc(tpath),
                )
            else:
                first = next(
                    str(t.storage_account_type) for t in d.target_regions if t.storage_account_type is not None
                )
                dest.set("storage_account_type", first)
                r.dropped(
                    self.subject(tpath),
                    f"target_region blocks, but Packer has one storage_account_type for all regions: {first} "
                    "(per-region storage types are lost)",
                    self.loc(tpath),
                )

    def region_name(self, t: model.TargetRegion) -> str | Expr:
        """A target region's name; one the template leaves out (null) is a variable, never a missing value."""
        name = self.text(t.name, "target_region")
        return (
            name if name is not None else self.variable("target_region", "a target region the template leaves unnamed")
        )

    def uniform_regions(self, d: model.SharedImageDistributor, dest: Block) -> bool:
        """targetRegions with one replica count and one storage type are replication_regions (and
        shared_image_gallery_replica_count), which every azure plugin reads; else False (target_region blocks)."""
        regions = d.target_regions or []
        counts = {t.replica_count for t in regions}
        types = {str(t.storage_account_type).lower() for t in regions if t.storage_account_type is not None}
        if len(counts) != 1 or types - {"standard_lrs"} or d.replication_regions:
            return False
        dest.set("replication_regions", [self.region_name(t) for t in regions])
        count = counts.pop()
        if count is not None:
            self.source.set("shared_image_gallery_replica_count", count)
        path = (*d.path, "targetRegions")
        self.report.mapped(
            self.subject(path),
            "replication_regions"
            + (f" with shared_image_gallery_replica_count {count}" if count is not None else "")
            + " (the same replica count and storage type in every region)",
            self.loc(path),
        )
        return True

    def vhd(self, d: model.VhdDistributor, label: str) -> bool:
        src = self.source
        account: str | Expr = self.variable("vhd_storage_account", "storage account to write the VHD to")
        container: str | Expr = "aibx"
        prefix: str | Expr = self.name
        if isinstance(d.uri, str) and d.uri:
            parts = urlsplit(d.uri)
            host = parts.hostname or ""
            segments = [s for s in parts.path.split("/") if s]
            if host.endswith(".blob.core.windows.net") and len(segments) >= 2:
                self.variables.pop("vhd_storage_account", None)
                account = host.split(".", 1)[0]
                container = segments[0]
                prefix = re.sub(r"\.vhd$", "", segments[-1], flags=re.IGNORECASE)
        src.set("storage_account", account)
        src.set(
            "resource_group_name", self.variable("vhd_resource_group_name", "resource group of the storage account")
        )
        src.set("capture_container_name", container)
        src.set("capture_name_prefix", self.capture_prefix(prefix))
        where = f"uri {redact_uri(d.uri)}" if isinstance(d.uri, str) else "no uri (AIB uses its staging storage)"
        self.report.approximated(
            label,
            f"capture_container_name / capture_name_prefix / storage_account ({where}): Packer names the blob "
            "itself (<container>/<prefix>-osDisk.<uuid>.vhd under system/Microsoft.Compute/Images)",
            self.loc(d.path),
        )
        return True

    def capture_prefix(self, prefix: str | Expr) -> str | Expr:
        """A capture_name_prefix Packer accepts (^[A-Za-z0-9][A-Za-z0-9_.-]{0,23}$), shortened deterministically."""
        if not isinstance(prefix, str) or _CAPTURE_PREFIX.fullmatch(prefix):
            return prefix
        short = shorten(re.sub(r"[^A-Za-z0-9_.-]", "-", prefix).lstrip("_.-") or "aibx", 24)
        self.report.approximated(
            "capture_name_prefix",
            f"{prefix!r} does not fit Packer's pattern for capture_name_prefix (24 characters, letters, digits, "
            f"_ . -): shortened to {short!r}",
        )
        return short

    # ------------------------------------------------------------------------------------------- steps
    def provisioners(self) -> None:
        tpl, r, b = self.tpl, self.report, self.build
        stage = Block(
            "provisioner",
            ["powershell" if self.windows else "shell"],
            {"name": STAGE_NAME, "inline": idioms.stage_deprovision(tpl.os_type)},
            comment=STAGE_COMMENT,
        )
        b.add(stage)
        for step in tpl.customize:
            block = self.step(step)
            if block is not None:
                b.add(block)
        validations = tpl.validate.in_vm_validations if tpl.validate else []
        for step in validations:
            block = self.step(step, validator=True)
            if block is not None:
                block.comment = VALIDATION_COMMENT
                b.add(block)
        final = Block(
            "provisioner",
            ["powershell" if self.windows else "shell"],
            {"name": DEPROVISION_NAME, "inline": idioms.run_deprovision(tpl.os_type)},
            comment=DEPROVISION_COMMENT,
        )
        if not self.windows:
            final.attributes = {
                "name": DEPROVISION_NAME,
                "execute_command": idioms.LINUX_DEPROVISION_EXECUTE,
                "inline": idioms.run_deprovision(tpl.os_type),
                "skip_clean": True,
            }
        b.add(final)
        r.mapped(
            "deprovision (implicit)",
            f"AIB's default script staged first at {tpl.deprovision_path} and run last, as AIB does",
        )

    def step(self, step: model.Step, validator: bool = False) -> Block | None:
        r = self.report
        what = "validator" if validator else "customizer"
        label = f'{self.subject(step.path)} "{step.label}" ({step.kind or getattr(step, "type_name", "?")})'
        loc = self.loc(step.path)
        if isinstance(step, model.UnknownStep):
            r.dropped(label, f"unknown {what} type {step.type_name!r}", loc)
            return None
        if validator:
            note = "; AIB runs validators on a fresh VM from the image, Packer on the build VM (marked by a comment)"
        else:
            note = ""
        if isinstance(step, (model.ShellStep, model.PowerShellStep)):
            return self.script_step(step, label, loc, note)
        if isinstance(step, model.FileStep):
            return self.file_step(step, label, loc, note)
        if isinstance(step, model.WindowsRestartStep):
            block = self.provisioner("windows-restart", step)
            block.set("restart_command", self.code(step.restart_command, step, "restartCommand"))
            block.set("restart_check_command", self.code(step.restart_check_command, step, "restartCheckCommand"))
            block.set("restart_timeout", self.code(step.restart_timeout, step, "restartTimeout"))
            self.add(label, "windows-restart" + note, loc, validator)
            return block
        if isinstance(step, model.WindowsUpdateStep):
            self.plugins["windows-update"] = WINDOWS_UPDATE_PLUGIN
            block = self.provisioner("windows-update", step)
            block.set("search_criteria", self.code(step.search_criteria, step, "searchCriteria"))
            if step.filters is not None:
                block.set("filters", [self.code(f, step, "filters") for f in step.filters])
            block.set("update_limit", step.update_limit)
            self.add(label, "windows-update (plugin rgl/windows-update, in required_plugins)" + note, loc, validator)
            return block
        r.dropped(label, f"{what} type {step.kind} has no Packer equivalent", loc)
        return None

    def add(self, label: str, detail: str, loc: Location, approximated: bool) -> None:
        (self.report.approximated if approximated else self.report.mapped)(label, detail, loc)

    def provisioner(self, kind: str, step: model.Step) -> Block:
        block = Block("provisioner", [kind])
        if step.name is not None:
            block.set("name", self.code(step.name, step, "name"))
        return block

    def code(self, value: model.Text | None, step: model.Step, key: str) -> str | Expr | None:
        return self.text(value, f"{_NOT_IDENTIFIER.sub('_', step.label)}_{key}")

    def script_step(
        self, step: model.ShellStep | model.PowerShellStep, label: str, loc: Location, note: str
    ) -> Block | None:
        r = self.report
        powershell = isinstance(step, model.PowerShellStep)
        block = self.provisioner("powershell" if powershell else "shell", step)
        approximated = bool(note)
        details = []
        if step.inline and step.script_uri:
            r.dropped(label, "both inline and scriptUri: AIB rejects this, and aibx cannot tell which is meant", loc)
            return None
        if step.inline:
            block.set("inline", [self.code(x, step, "inline") for x in step.inline])
            details.append("inline")
        elif isinstance(step.script_uri, str) and step.script_uri:
            uri = step.script_uri
            sha = step.sha256_checksum if isinstance(step.sha256_checksum, str) and step.sha256_checksum else None
            local = _local_file(uri, self.tpl.file)
            if local is not None:
                if not self.check_local(local, uri, sha, step, "scriptUri", loc):
                    return None
                block.set("script", self.relative_source(local))
                details.append("script (local file" + ("; aibx checked its sha256 now" if sha else "") + ")")
            else:
                lines = idioms.windows_run_script(uri, sha) if powershell else idioms.linux_run_script(uri, sha)
                block.set("inline", lines)
                details.append(
                    "inline download of scriptUri"
                    + (", sha256 checked before it runs" if sha else " (no sha256Checksum)")
                    + ": Packer only uploads local files"
                )
                approximated = True
        elif isinstance(step.script_uri, Unresolved):
            sha = step.sha256_checksum if isinstance(step.sha256_checksum, str) and step.sha256_checksum else None
            parts = self.text_parts(step.script_uri, f"{_NOT_IDENTIFIER.sub('_', step.label)}_scriptUri")
            lines = idioms.windows_run_script(OPEN_URI, sha) if powershell else idioms.linux_run_script(OPEN_URI, sha)
            block.set("inline", self.open_lines(lines, {OPEN_URI: parts}))
            details.append(
                f"inline download of scriptUri, which the template leaves open ({step.script_uri.reason}): "
                "a Packer variable"
            )
            approximated = True
        else:
            r.dropped(label, "neither inline nor a usable scriptUri", loc)
            return None
        if isinstance(step, model.PowerShellStep):
            if step.run_as_system:
                block.set("elevated_user", "SYSTEM")
                block.set("elevated_password", "")
                details.append("runAsSystem as elevated_user SYSTEM")
                approximated = True
            elif step.run_elevated:
                block.set("elevated_user", Expr("build.User"))
                block.set("elevated_password", Expr("build.Password"))
                details.append("runElevated as elevated_user build.User (scheduled task)")
                approximated = True
            if step.valid_exit_codes is not None:
                block.set("valid_exit_codes", step.valid_exit_codes)
                details.append("valid_exit_codes")
        self.add(label, "; ".join(details) + note, loc, approximated)
        return block

    def file_step(self, step: model.FileStep, label: str, loc: Location, note: str) -> Block | None:
        r = self.report
        if isinstance(step.source_uri, Unresolved) and step.destination is not None:
            return self.open_file_step(step, label, loc, note)
        if not isinstance(step.source_uri, str) or not step.source_uri or step.destination is None:
            r.dropped(label, "sourceUri or destination missing", loc)
            return None
        uri = step.source_uri
        sha = step.sha256_checksum if isinstance(step.sha256_checksum, str) and step.sha256_checksum else None
        destination = self.code(step.destination, step, "destination")
        local = _local_file(uri, self.tpl.file)
        if local is not None:
            if not self.check_local(local, uri, sha, step, "sourceUri", loc):
                return None
            block = self.provisioner("file", step)
            block.set("source", self.relative_source(local))
            block.set("destination", destination)
            self.add(
                label,
                "file provisioner from the local file" + ("; aibx checked its sha256 now" if sha else "") + note,
                loc,
                bool(note),
            )
            return block
        if not isinstance(destination, str):
            return self.open_file_step(step, label, loc, note)
        block = self.provisioner("powershell" if self.windows else "shell", step)
        lines = (idioms.windows_fetch_file if self.windows else idioms.linux_fetch_file)(uri, destination, sha)
        block.set("inline", lines)
        r.approximated(
            label,
            "inline download to the destination"
            + (", sha256 checked before it is moved into place" if sha else " (no sha256Checksum)")
            + ": the file provisioner only uploads local files"
            + note,
            loc,
        )
        return block

    def open_file_step(self, step: model.FileStep, label: str, loc: Location, note: str) -> Block:
        """A File customizer whose sourceUri or destination the template leaves open: the inline download with
        a Packer variable for each open part."""
        sha = step.sha256_checksum if isinstance(step.sha256_checksum, str) and step.sha256_checksum else None
        stem = _NOT_IDENTIFIER.sub("_", step.label)
        source, destination = step.source_uri, step.destination
        uri_parts: list[str | Expr] = (
            self.text_parts(source, f"{stem}_sourceUri") if isinstance(source, Unresolved) else [str(source)]
        )
        dest = OPEN_DESTINATION if isinstance(destination, Unresolved) else str(destination)
        fetch = idioms.windows_fetch_file if self.windows else idioms.linux_fetch_file
        stand_ins = {OPEN_URI: uri_parts}
        if isinstance(destination, Unresolved):
            stand_ins[OPEN_DESTINATION] = self.text_parts(destination, f"{stem}_destination")
        lines = self.open_lines(fetch(OPEN_URI, dest, sha), stand_ins)
        block = self.provisioner("powershell" if self.windows else "shell", step)
        block.set("inline", lines)
        open_fields = [k for k, v in (("sourceUri", source), ("destination", destination)) if isinstance(v, Unresolved)]
        self.report.approximated(
            label,
            f"inline download to the destination; {' and '.join(open_fields)} left open by the template: Packer "
            "variables" + note,
            loc,
        )
        return block

    def check_local(self, path: Path, uri: str, sha: str | None, step: model.Step, key: str, loc: Location) -> bool:
        try:
            data = read_local_file(path)
        except LocalFileError as exc:
            self.report.error("AIB075", f"{key} {uri}: {exc.reason}", loc, self.subject((*step.path, key)))
            return False
        if sha and hashlib.sha256(data).hexdigest() != sha.lower():
            self.report.error(
                "AIB075",
                f"{key} {uri}: the file's sha256 is {hashlib.sha256(data).hexdigest()}, not {sha}",
                loc,
                self.subject((*step.path, key)),
            )
            return False
        return True

    def relative_source(self, path: Path) -> str | Expr:
        try:
            rel = Path(_relpath(path, self.output_dir))
        except ValueError:
            return str(path)
        return template([Expr("path.root"), "/" + rel.as_posix()])


def shorten(name: str, limit: int) -> str:
    """``name`` within ``limit`` characters, deterministically: its start, then a hash of the whole name."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{name[: limit - 7].rstrip('_.-')}-{digest}"


def _fits(group: dict[str, model.Distributor], d: model.Distributor) -> bool:
    """Whether one azure-arm source can write ``d`` besides the outputs in ``group`` (a managed image and a
    gallery version, or a VHD alone)."""
    if d.kind in group:
        return False
    return not group or ("VHD" not in group and not isinstance(d, model.VhdDistributor))


def _relpath(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), start.resolve())


def _local_file(uri: str, template_file: str) -> Path | None:
    """The local file a ``file:`` URI names (relative ones from the template's folder), else None."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file":
        return None
    raw = unquote(parts.path or parts.netloc)
    path = Path(raw)
    if not path.is_absolute():
        path = Path(template_file).resolve().parent / path
    return path
