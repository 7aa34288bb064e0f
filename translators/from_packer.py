"""A Packer configuration (HCL2 or legacy JSON, evaluated) → AIB image templates (the model): one per
``azure-arm`` source of each selected build.

Every field and provisioner gets a report entry; docs/translate.md has the mapping. ``SourceTranslator`` maps a
source's settings (image, placement, VM, outputs, tags) and orders the steps; each provisioner is mapped by
packer_provisioners.StepMapper. Two whole-build rules live here:

* a trailing waagent/Sysprep provisioner is AIB's own deprovision step: dropped when it does what AIB's default
  does, else it becomes AIB's override script;
* aibx's own output (AIB → HCL: staging and running the deprovision script, validators marked by a comment) is
  read back as what it was.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from aibx import model
from aibx.document import Unresolved
from aibx.translators import idioms
from aibx.translators.aib import NEWEST_API_VERSION
from aibx.translators.packer_config import Attr, Build, PackerConfig, Section, SourceRef, text_of
from aibx.translators.packer_provisioners import INLINE_LIMIT, StepMapper, provisioner_subject
from aibx.translators.report import Location, Report
from aibx.translators.to_packer import GALLERY_STAGING_VARIABLE, VALIDATION_MARK

_WAAGENT = re.compile(r"\bwaagent\b.*-deprovision")
_WAAGENT_DEFAULT = re.compile(
    r"^\s*(?:sudo\s+(?:-\S+\s+)*)?(?:/usr/sbin/)?waagent\s+-force\s+-deprovision\+user"
    r"(?:\s*&&\s*export\s+HISTSIZE=0)?(?:\s*&&\s*sync)?\s*;?\s*$"
)
_SYSPREP = re.compile(r"sysprep(\.exe)?\b.*/generalize", re.IGNORECASE)
_NOT_RUN_OUTPUT = re.compile(r"[^A-Za-z0-9_.-]")

# azure-arm settings that only steer how Packer sets up and reaches its build VM: AIB does that itself
_CREDENTIALS = {
    "client_id", "client_secret", "client_cert_path", "client_cert_token_timeout", "client_jwt", "object_id",
    "oidc_request_token", "oidc_request_url", "tenant_id", "use_azure_cli_auth", "use_interactive_auth",
    "cloud_environment_name", "subscription_id",
}  # fmt: skip
_PLUMBING = {
    "communicator", "async_resourcegroup_delete", "polling_duration_timeout", "temp_compute_name", "temp_nic_name",
    "temp_os_disk_name", "keep_os_disk", "allowed_inbound_ip_addresses", "build_key_vault_name",
    "build_key_vault_sku", "build_key_vault_secret_name", "skip_create_build_key_vault", "public_ip_sku",
    "private_virtual_network_with_public_ip", "shared_image_gallery_timeout", "winrm_expiry_time",
    "custom_resource_build_prefix", "pause_before_connecting", "skip_clean", "ssh_clear_authorized_keys",
}  # fmt: skip
_COMMUNICATOR_PREFIXES = ("ssh_", "winrm_", "temporary_key_pair_")


@dataclass
class AibOptions:
    only: list[str] = field(default_factory=list)
    upload_base_uri: str | None = None
    api_version: str = NEWEST_API_VERSION
    cwd: str = "."
    inline_limit: int = INLINE_LIMIT
    allow_local_files: bool = False  # read local files outside the configuration's folder


@dataclass(frozen=True)
class Upload:
    """A file to publish under the upload base URI."""

    name: str  # path below the base URI (and below the upload folder)
    data: bytes | None = None
    local: str | None = None

    @property
    def sha256(self) -> str:
        data = self.data if self.data is not None else Path(self.local or "").read_bytes()
        return hashlib.sha256(data).hexdigest()


@dataclass
class Translation:
    name: str  # BUILD.TYPE.NAME
    report: Report
    template: model.ImageTemplate | None = None
    uploads: list[Upload] = field(default_factory=list)


def translate(config: PackerConfig, options: AibOptions | None = None) -> list[Translation]:
    options = options or AibOptions()
    out: list[Translation] = []
    for build in config.builds:
        for source in build.sources:
            if options.only and not _selected(options.only, build, source):
                continue
            out.append(SourceTranslator(config, build, source, options).run())
    return out


def source_names(build: Build, source: SourceRef) -> list[str]:
    names = [source.full_name, source.name]
    if build.name:
        names += [f"{build.name}.{source.full_name}", f"{build.name}.{source.name}", build.name]
    return names


def _selected(patterns: list[str], build: Build, source: SourceRef) -> bool:
    names = source_names(build, source)
    return any(fnmatch.fnmatchcase(n, p) for p in patterns for n in names)


def _sane_name(text: str) -> str:
    return _NOT_RUN_OUTPUT.sub("-", text).strip("-") or "output"


def _unknown_text(value: Unresolved) -> str:
    return f"not known: {value.reason}"


def fit_name(name: str, limit: int = 64) -> str:
    """``name`` in AIB's alphabet for names and run outputs (letters, digits, - _ .) and within ``limit``
    characters: a longer one keeps its start and ends with a hash of the whole name, so it stays unique."""
    sane = _sane_name(name)
    if len(sane) <= limit and sane == name:
        return name
    if len(sane) <= limit:
        return sane
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{sane[: limit - 7].rstrip('-_.')}-{digest}"


# ----------------------------------------------------------------------------------------------- one source
class SourceTranslator:
    def __init__(self, config: PackerConfig, build: Build, source: SourceRef, options: AibOptions) -> None:
        self.config = config
        self.build = build
        self.source = source
        self.options = options
        self.sec = source.section
        full = ".".join(x for x in (build.name, source.type, source.name) if x)
        self.name = full
        self.report = Report(
            config.path,
            "aib",
            name=full,
            secrets=set(config.secrets),
            secret_sources=dict(config.secret_names),
            secure_names=set(config.sensitive_names),
            secure_locations=dict(config.sensitive_locations),
            environment_sources=set(config.environment_sources),
        )
        self.uploads: dict[str, Upload] = {}
        self.tpl = model.ImageTemplate(file=config.path, name=fit_name(source.name), api_version=options.api_version)
        if self.tpl.name != source.name:
            self.report.approximated(
                f"source {source.full_name}",
                f"template name {self.tpl.name}: AIB names have at most 64 letters, digits, - _ and .",
                source.location,
            )
        self.subscription: model.Text = ""
        self.username = "packer"
        self.used: set[str] = set()
        self.counter = 0
        self.override: model.Step | None = None  # a customizer writing AIB's deprovision script

    # ------------------------------------------------------------------------------------------- helpers
    def subject(self, key: str) -> str:
        return f"source.{self.source.full_name}.{key}"

    def take(self, key: str) -> Attr | None:
        self.used.add(key)
        return self.sec.get(key)

    def required(self, key: str, attr: Attr | None = None, *, what: str | None = None) -> model.Text:
        """The value, or a ``<placeholder>`` named after its variable when it is empty or unset."""
        attr = attr if attr is not None else self.take(key)
        value = attr.value if attr is not None else None
        if isinstance(value, Unresolved):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str) and value:
            return value
        name = attr.origin[4:] if attr is not None and attr.origin else key
        return Unresolved(f"<{name}>", f"{what or key} is empty in the Packer configuration; pass -p {name}=VALUE")

    def optional(self, key: str, default: str) -> model.Text:
        """The value, or Packer's default when it is not given or empty."""
        attr = self.take(key)
        if attr is None or attr.value in (None, ""):
            return default
        return self.required(key, attr)

    def join(self, *parts: model.Text) -> model.Text:
        text = "".join(p.text if isinstance(p, Unresolved) else p for p in parts)
        reasons = [p.reason for p in parts if isinstance(p, Unresolved)]
        return Unresolved(text, reasons[0]) if reasons else text

    def loc(self, key: str) -> Location:
        return self.sec.where(key)

    # ------------------------------------------------------------------------------------------- main
    def run(self) -> Translation:
        tr = Translation(self.name, self.report)
        if self.source.type != "azure-arm":
            self.report.dropped(
                f"source.{self.source.full_name}",
                f"a {self.source.type} source: AIB builds only on Azure (azure-arm)",
                self.source.location,
            )
            return tr
        self.operating_system()
        self.credentials()
        self.image_source()
        self.placement()
        self.vm()
        self.outputs()
        self.tags()
        self.rest_of_source()
        self.steps()
        self.unique_step_names()
        self.build_extras()
        self.report.approximated(
            "variables and locals",
            "evaluated now: the AIB template holds their values (ARM parameters are not generated)"
            + ("; not those of sensitive ones (AIB077)" if self.config.sensitive_names else ""),
        )
        self.report.entries.sort(key=lambda e: (e.location.file != "", e.location.file, e.location.line))
        tr.template = self.tpl
        tr.uploads = list(self.uploads.values())
        return tr

    def unique_step_names(self) -> None:
        """AIB rejects two customizers (or validators) of the same name: a repeated name gets " (2)", " (3)"..."""
        for steps in (self.tpl.customize, self.tpl.validate.in_vm_validations if self.tpl.validate else []):
            self.unique_names(steps)

    def unique_names(self, steps: list[model.Step]) -> None:
        seen: set[str] = set()
        for step in steps:
            name = step.name
            if not isinstance(name, str) or not name:
                continue
            if name.lower() in seen:
                n = 2
                while f"{name} ({n})".lower() in seen:
                    n += 1
                step.name = f"{name} ({n})"
                self.report.approximated(f'customizer "{name}"', f"renamed {step.name}: AIB needs unique names")
            seen.add(str(step.name).lower())

    def operating_system(self) -> None:
        attr = self.take("os_type")
        comm = text_of(self.sec.value("communicator")) or ""
        value = text_of(attr.value) if attr else None
        if attr is not None and value and value.lower() in ("windows", "linux"):
            self.tpl.os_type = model.OsType.WINDOWS if value.lower() == "windows" else model.OsType.LINUX
            self.tpl.os_reason = f"os_type {value}"
            self.report.mapped(self.subject("os_type"), f"the image is {self.tpl.os_type.value}", attr.location)
        elif comm == "winrm":
            self.tpl.os_type, self.tpl.os_reason = model.OsType.WINDOWS, "communicator winrm"
        else:
            self.tpl.os_type, self.tpl.os_reason = model.OsType.LINUX, "os_type not given"
        key = "winrm_username" if self.tpl.os_type is model.OsType.WINDOWS else "ssh_username"
        user = text_of(self.sec.value(key))
        if user:
            self.username = user

    @property
    def windows(self) -> bool:
        return self.tpl.os_type is model.OsType.WINDOWS

    def credentials(self) -> None:
        sub = self.take("subscription_id")
        self.subscription = self.required("subscription_id", sub, what="subscription_id")
        found = [k for k in sorted(_CREDENTIALS) if k in self.sec.attrs]
        for key in found:
            self.used.add(key)
            self.report.approximated(
                self.subject(key),
                "AIB acts as the template's user-assigned identity (identity placeholder <identityId>); "
                "the value is not carried over"
                if key != "subscription_id"
                else "the subscription of the resource IDs AIB needs",
                self.loc(key),
            )
        self.tpl.identity = model.Identity(
            type="UserAssigned",
            user_assigned_identities=[
                Unresolved(
                    "<identityId>",
                    "AIB acts as a user-assigned managed identity; pass -p identityId=<its resource ID>",
                )
            ],
        )

    def image_source(self) -> None:
        r, sec = self.report, self.sec
        if sec.get("image_publisher") or sec.get("image_offer") or sec.get("image_sku"):
            self._platform_source()
        elif sec.get("custom_managed_image_name"):
            rg = self.required("custom_managed_image_resource_group_name")
            name = self.required("custom_managed_image_name")
            self.tpl.source = model.ManagedImageSource(
                image_id=self.join(
                    "/subscriptions/",
                    self.subscription,
                    "/resourceGroups/",
                    rg,
                    "/providers/Microsoft.Compute/images/",
                    name,
                )
            )
            r.mapped(
                self.subject("custom_managed_image_name"), "source ManagedImage", self.loc("custom_managed_image_name")
            )
        elif sec.sections("shared_image_gallery"):
            if not self._gallery_source():
                return  # (the keys stay unmarked, as before)
        elif sec.get("image_url"):
            self.take("image_url")
            self.open_source_image()
            r.dropped(
                self.subject("image_url"),
                "AIB cannot start from a VHD URL: make a managed image of the VHD (az image create --source URL) and "
                "give its ID for the source placeholder <source_image_id>",
                self.loc("image_url"),
            )
        else:
            self.open_source_image()
            r.dropped(
                f"source.{self.source.full_name}",
                "no source image (image_publisher, custom_managed_image_name or shared_image_gallery): the AIB "
                "template's source is the placeholder <source_image_id>",
                self.source.location,
            )
        for key in (
            "image_publisher",
            "image_offer",
            "image_sku",
            "image_version",
            "custom_managed_image_name",
            "custom_managed_image_resource_group_name",
            "image_url",
        ):
            self.used.add(key)

    def _platform_source(self) -> None:
        """image_publisher/offer/sku/version (and plan_info): a PlatformImage source."""
        r, sec = self.report, self.sec
        src = model.PlatformImageSource(
            publisher=self.required("image_publisher"),
            offer=self.required("image_offer"),
            sku=self.required("image_sku"),
            version=self.optional("image_version", "latest"),
        )
        plans = sec.sections("plan_info")
        self.used.add("plan_info")
        if plans:
            p = plans[0]
            src.plan_info = model.PlanInfo(
                self.required("plan_name", p.get("plan_name")),
                self.required("plan_product", p.get("plan_product")),
                self.required("plan_publisher", p.get("plan_publisher")),
            )
            r.mapped(self.subject("plan_info"), "source.planInfo", p.location)
            if p.get("plan_promotion_code") and p.value("plan_promotion_code"):
                r.dropped(
                    self.subject("plan_info.plan_promotion_code"),
                    "AIB's planInfo has no promotion code",
                    p.where("plan_promotion_code"),
                )
        self.tpl.source = src
        r.mapped(
            self.subject("image_publisher/offer/sku/version"),
            "source PlatformImage",
            self.loc("image_publisher"),
        )

    def _gallery_source(self) -> bool:
        """shared_image_gallery: a SharedImageVersion source; False (and dropped) for a community or direct shared
        gallery, which AIB cannot start from."""
        r, sec = self.report, self.sec
        self.used.add("shared_image_gallery")
        g = sec.sections("shared_image_gallery")[0]
        gid = text_of(g.value("id"))
        if gid:
            image_version_id: model.Text = gid
        elif g.get("community_gallery_image_id") or g.get("direct_shared_gallery_image_id"):
            r.dropped(
                self.subject("shared_image_gallery"),
                "community and direct shared gallery sources are not AIB SharedImageVersion sources",
                g.location,
            )
            return False
        else:
            sub = self.required("subscription", g.get("subscription")) if g.get("subscription") else self.subscription
            version = text_of(g.value("image_version")) or "latest"
            image_version_id = self.join(
                "/subscriptions/",
                sub,
                "/resourceGroups/",
                self.required("resource_group", g.get("resource_group")),
                "/providers/Microsoft.Compute/galleries/",
                self.required("gallery_name", g.get("gallery_name")),
                "/images/",
                self.required("image_name", g.get("image_name")),
                "/versions/",
                version,
            )
        self.tpl.source = model.SharedImageVersionSource(image_version_id=image_version_id)
        r.mapped(self.subject("shared_image_gallery"), "source SharedImageVersion", g.location)
        return True

    def open_source_image(self) -> None:
        """A source AIB can start from, left open: a managed image whose ID the user gives (so the template is
        one aibx validate accepts, with the placeholder reported)."""
        self.tpl.source = model.ManagedImageSource(
            image_id=Unresolved("<source_image_id>", "the source image is open; pass -p source_image_id=VALUE")
        )

    def placement(self) -> None:
        r = self.report
        loc_attr = self.take("location")
        build_rg = self.take("build_resource_group_name")
        temp_rg = self.take("temp_resource_group_name")
        if loc_attr is not None and (text_of(loc_attr.value) or isinstance(loc_attr.value, Unresolved)):
            self.tpl.location = self.required("location", loc_attr)
            r.mapped(self.subject("location"), "location", loc_attr.location)
        else:
            self.tpl.location = Unresolved(
                "<location>", "Packer built in an existing resource group's region; pass -p location=REGION"
            )
            r.approximated(
                self.subject("location"),
                "not given (Packer used the build resource group's region): location placeholder <location>",
                loc_attr.location if loc_attr else self.source.location,
            )
        for attr, key, how in (
            (build_rg, "build_resource_group_name", "an existing group Packer builds in and never deletes"),
            (temp_rg, "temp_resource_group_name", "a group Packer creates and deletes"),
        ):
            if attr is None or not text_of(attr.value):
                continue
            if self.tpl.staging_resource_group is not None:
                r.dropped(self.subject(key), "AIB has one staging resource group", attr.location)
                continue
            self.tpl.staging_resource_group = self.join(
                "/subscriptions/", self.subscription, "/resourceGroups/", self.required(key, attr)
            )
            r.approximated(
                self.subject(key),
                f"stagingResourceGroup ({how}; AIB wants it empty or absent, tags it, and deletes it with the "
                "template)",
                attr.location,
            )

    def vm(self) -> None:
        r = self.report
        vm = model.VmProfile()
        size = self.take("vm_size")
        if size is not None and (text_of(size.value) or isinstance(size.value, Unresolved)):
            vm.vm_size = self.required("vm_size", size)
            r.mapped(self.subject("vm_size"), "vmProfile.vmSize", size.location)
        else:
            r.approximated(
                self.subject("vm_size"),
                "not given: Packer would use Standard_A1; AIB uses its own default (Standard_D1_v2, or "
                "Standard_D2ds_v4 for Gen2 images)",
                self.source.location,
            )
        disk = self.take("os_disk_size_gb")
        if disk is not None and isinstance(disk.value, (int, float, str)) and str(disk.value).isdigit():
            vm.os_disk_size_gb = int(disk.value)
            r.mapped(self.subject("os_disk_size_gb"), "vmProfile.osDiskSizeGB", disk.location)
        extra = self.take("disk_additional_size")
        if extra is not None and isinstance(extra.value, Unresolved):
            r.dropped(self.subject("disk_additional_size"), _unknown_text(extra.value), extra.location)
        elif extra is not None and isinstance(extra.value, list):
            self.tpl.additional_data_disks = [int(x) if str(x).isdigit() else None for x in extra.value]
            r.mapped(self.subject("disk_additional_size"), "additionalDataDisks", extra.location)
        ids = self.take("user_assigned_managed_identities")
        if ids is not None and isinstance(ids.value, (list, Unresolved)) and ids.value:
            values = self.open_list(ids.value, "user_assigned_managed_identities")
            vm.user_assigned_identities = [x for x in values if isinstance(x, (str, Unresolved))]
            r.mapped(self.subject("user_assigned_managed_identities"), "vmProfile.userAssignedIdentities", ids.location)
        vnet = self.take("virtual_network_name")
        subnet = self.take("virtual_network_subnet_name")
        vnet_rg = self.take("virtual_network_resource_group_name")
        if vnet is not None and text_of(vnet.value):
            rg = self.required("virtual_network_resource_group_name", vnet_rg)
            subnet_name = self.required("virtual_network_subnet_name", subnet)
            vm.vnet_config = model.VnetConfig(
                subnet_id=self.join(
                    "/subscriptions/",
                    self.subscription,
                    "/resourceGroups/",
                    rg,
                    "/providers/Microsoft.Network/virtualNetworks/",
                    self.required("virtual_network_name", vnet),
                    "/subnets/",
                    subnet_name,
                )
            )
            r.approximated(
                self.subject("virtual_network_name"),
                "vmProfile.vnetConfig.subnetId: AIB reaches the VM through its own proxy VM in that network",
                vnet.location,
            )
        else:
            for attr, key in (
                (subnet, "virtual_network_subnet_name"),
                (vnet_rg, "virtual_network_resource_group_name"),
            ):
                if attr is not None and text_of(attr.value):
                    r.dropped(self.subject(key), "needs virtual_network_name", attr.location)
        if vm != model.VmProfile():
            self.tpl.vm_profile = vm

    def open_list(self, value: object, key: str) -> list[object]:
        """A list setting; a list variable without a value is one open value (a <placeholder> to fill in with
        the whole list's items), reported."""
        if isinstance(value, Unresolved):
            self.report.approximated(
                self.subject(key),
                f"a list without a value ({value.reason}): one placeholder {value.text}; give each item",
            )
            return [value]
        return value if isinstance(value, list) else []

    def run_output(self, kind: str) -> str:
        """The runOutputName of one output, NAME-KIND, within AIB's 64 characters (reported when shortened)."""
        want = f"{_sane_name(self.source.name)}-{kind}"
        name = fit_name(want)
        if name != want:
            self.report.approximated(
                f"runOutputName {kind}", f"{name}: AIB's run output names have at most 64 characters ({want})"
            )
        return name

    def managed_image_output(self) -> None:
        """managed_image_name / _resource_group_name: a ManagedImage target, unless it is the image aibx's own
        AIB → Packer output writes beside a gallery output."""
        r, sec = self.report, self.sec
        mi_name = self.take("managed_image_name")
        mi_rg = self.take("managed_image_resource_group_name")
        companion = (
            mi_name is not None
            and mi_name.origin == f"var.{GALLERY_STAGING_VARIABLE}"
            and bool(sec.sections("shared_image_gallery_destination"))
        )
        if companion and mi_name is not None:
            r.approximated(
                self.subject("managed_image_name"),
                "the managed image aibx writes for a gallery output (old azure plugins publish a gallery version "
                "from one): AIB publishes the gallery version directly",
                mi_name.location,
            )
        elif mi_name is not None and (text_of(mi_name.value) or isinstance(mi_name.value, Unresolved)):
            run_output = self.run_output("managed-image")
            image_id = self.join(
                "/subscriptions/",
                self.subscription,
                "/resourceGroups/",
                self.required("managed_image_resource_group_name", mi_rg),
                "/providers/Microsoft.Compute/images/",
                self.required("managed_image_name", mi_name),
            )
            self.tpl.distribute.append(
                model.ManagedImageDistributor(image_id=image_id, location=self.tpl.location, run_output_name=run_output)
            )
            r.mapped(
                self.subject("managed_image_name"),
                f"distribute ManagedImage (runOutputName {run_output})",
                mi_name.location,
            )

    def outputs(self) -> None:
        r, sec = self.report, self.sec
        base = _sane_name(self.source.name)
        self.managed_image_output()
        for key in (
            "managed_image_storage_account_type",
            "managed_image_zone_resilient",
            "managed_image_os_disk_snapshot_name",
            "managed_image_data_disk_snapshot_prefix",
        ):
            attr = self.take(key)
            if attr is not None and attr.value not in (None, "", False):
                r.dropped(self.subject(key), "AIB's ManagedImage distribute target has no such setting", attr.location)
        dests = sec.sections("shared_image_gallery_destination")
        self.used.add("shared_image_gallery_destination")
        replicas = self.take("shared_image_gallery_replica_count")
        exclude = self.take("shared_gallery_image_version_exclude_from_latest")
        if dests:
            self.gallery(dests[0], base, replicas, exclude)
        for key, attr in (
            ("shared_image_gallery_replica_count", replicas),
            ("shared_gallery_image_version_exclude_from_latest", exclude),
        ):
            if attr is not None and not dests:
                r.dropped(self.subject(key), "needs shared_image_gallery_destination", attr.location)
        container = self.take("capture_container_name")
        prefix = self.take("capture_name_prefix")
        account = self.take("storage_account")
        vhd_rg = self.take("resource_group_name")
        if container is not None or account is not None:
            run_output = self.run_output("vhd")
            self.tpl.distribute.append(model.VhdDistributor(run_output_name=run_output))
            r.approximated(
                self.subject("capture_container_name"),
                f"distribute VHD (runOutputName {run_output}): AIB writes the VHD to its staging storage account "
                "(set distribute[].uri to choose a blob)",
                (container or account).location,  # type: ignore[union-attr]
            )
            for attr, key in (
                (prefix, "capture_name_prefix"),
                (account, "storage_account"),
                (vhd_rg, "resource_group_name"),
            ):
                if attr is not None:
                    r.approximated(self.subject(key), "part of the VHD output above", attr.location)
        if not self.tpl.distribute:
            r.dropped(
                f"source.{self.source.full_name}",
                "no output (managed_image_name, shared_image_gallery_destination or capture_container_name): "
                "AIB needs at least one distribute target",
                self.source.location,
            )

    def gallery(self, d: Section, base: str, replicas: Attr | None, exclude: Attr | None) -> None:
        r = self.report
        version_attr = d.get("image_version")
        version = version_attr.value if version_attr else None
        sub = self.required("subscription", d.get("subscription")) if d.get("subscription") else self.subscription
        gallery_id = self.join(
            "/subscriptions/",
            sub,
            "/resourceGroups/",
            self.required("resource_group", d.get("resource_group")),
            "/providers/Microsoft.Compute/galleries/",
            self.required("gallery_name", d.get("gallery_name")),
            "/images/",
            self.required("image_name", d.get("image_name")),
        )
        dist = model.SharedImageDistributor(run_output_name=self.run_output("gallery-image"))
        if isinstance(version, str) and version:
            dist.gallery_image_id = self.join(gallery_id, "/versions/", version)
            r.mapped(self.subject("shared_image_gallery_destination"), "distribute SharedImage", d.location)
        else:
            dist.gallery_image_id = gallery_id
            r.approximated(
                self.subject("shared_image_gallery_destination.image_version"),
                "not given: AIB picks the next version itself (galleryImageId without /versions/)",
                d.where("image_version"),
            )
            r.mapped(self.subject("shared_image_gallery_destination"), "distribute SharedImage", d.location)
        self._gallery_replication(d, dist, replicas)
        self._gallery_settings(d, dist, exclude)
        self.tpl.distribute.append(dist)

    def _gallery_replication(self, d: Section, dist: model.SharedImageDistributor, replicas: Attr | None) -> None:
        """Where the gallery version is replicated: target_region blocks, replication_regions (with the replica
        count), the storage account type."""
        r = self.report
        storage = text_of(d.value("storage_account_type")) or None  # empty: AIB's default
        regions = [
            x
            for x in self.open_list(d.value("replication_regions"), "replication_regions")
            if isinstance(x, (str, Unresolved))
        ]
        targets = d.sections("target_region")
        count = replicas.value if replicas is not None else None
        if targets:
            dist.target_regions = [
                model.TargetRegion(
                    name=self.required("name", t.get("name")),
                    replica_count=int(t.value("replicas")) if str(t.value("replicas", "")).isdigit() else None,
                    storage_account_type=storage,
                )
                for t in targets
            ]
            r.mapped(
                self.subject("shared_image_gallery_destination.target_region"), "targetRegions", targets[0].location
            )
            if regions:
                r.dropped(
                    self.subject("shared_image_gallery_destination.replication_regions"),
                    "AIB takes targetRegions or replicationRegions, not both",
                    d.where("replication_regions"),
                )
        elif regions and count is not None and str(count).isdigit():
            dist.target_regions = [
                model.TargetRegion(name=x, replica_count=int(count), storage_account_type=storage) for x in regions
            ]
            r.mapped(
                self.subject("shared_image_gallery_destination.replication_regions"),
                f"targetRegions, each with replicaCount {count} (shared_image_gallery_replica_count)",
                d.where("replication_regions"),
            )
        elif regions:
            dist.replication_regions = regions
            dist.storage_account_type = storage
            r.mapped(
                self.subject("shared_image_gallery_destination.replication_regions"),
                "replicationRegions",
                d.where("replication_regions"),
            )
        elif storage:
            dist.target_regions = [model.TargetRegion(name=self.tpl.location, storage_account_type=storage)]
        if storage:
            r.mapped(
                self.subject("shared_image_gallery_destination.storage_account_type"),
                "storageAccountType",
                d.where("storage_account_type"),
            )
        if replicas is not None and count is not None and not dist.target_regions:
            r.dropped(
                self.subject("shared_image_gallery_replica_count"), "needs replication regions", replicas.location
            )
        elif count is not None and targets:
            r.approximated(
                self.subject("shared_image_gallery_replica_count"),
                "each target_region block gives its own replicas",
                replicas.location,  # type: ignore[union-attr]
            )

    def _gallery_settings(self, d: Section, dist: model.SharedImageDistributor, exclude: Attr | None) -> None:
        """excludeFromLatest, shallow replication, and every setting of the block AIB has no counterpart for."""
        r = self.report
        if exclude is not None and isinstance(exclude.value, bool):
            dist.exclude_from_latest = exclude.value
            r.mapped(
                self.subject("shared_gallery_image_version_exclude_from_latest"), "excludeFromLatest", exclude.location
            )
        shallow = d.value("use_shallow_replication")
        if shallow is True:
            dist.replication_mode = "Shallow"
            r.mapped(
                self.subject("shared_image_gallery_destination.use_shallow_replication"),
                "replicationMode Shallow",
                d.where("use_shallow_replication"),
            )
        known = {
            "subscription",
            "resource_group",
            "gallery_name",
            "image_name",
            "image_version",
            "replication_regions",
            "storage_account_type",
            "use_shallow_replication",
            "target_region",
        }
        for key, attr in d.attrs.items():
            if key not in known:
                r.dropped(
                    self.subject(f"shared_image_gallery_destination.{key}"), "AIB has no such setting", attr.location
                )

    def tags(self) -> None:
        tags: dict[str, model.Text] = {}
        attr = self.take("azure_tags")
        if attr is not None and isinstance(attr.value, dict):
            tags.update({k: v for k, v in attr.value.items() if isinstance(v, (str, Unresolved))})
            self.report.mapped(
                self.subject("azure_tags"),
                "managedResourceTags and every distribute target's artifactTags (Packer tags both)",
                attr.location,
            )
        blocks = self.sec.sections("azure_tag")
        self.used.add("azure_tag")
        for b in blocks:
            name, value = b.value("name"), b.value("value")
            if isinstance(name, str) and isinstance(value, (str, Unresolved)):
                tags[name] = value
        if blocks:
            self.report.mapped(self.subject("azure_tag"), "managedResourceTags and artifactTags", blocks[0].location)
        if tags:
            self.tpl.managed_resource_tags = dict(tags)
            for d in self.tpl.distribute:
                d.artifact_tags = dict(tags)

    def rest_of_source(self) -> None:
        r = self.report
        for key, attr in self.sec.attrs.items():
            if key in self.used:
                continue
            if key in _PLUMBING or key.startswith(_COMMUNICATOR_PREFIXES):
                r.approximated(
                    self.subject(key), "AIB creates, reaches and cleans up the build VM itself", attr.location
                )
            else:
                r.dropped(self.subject(key), "an azure-arm setting AIB has no equivalent for", attr.location)
        for block in self.sec.blocks:
            if block.type not in self.used:
                r.dropped(self.subject(block.type), "an azure-arm block AIB has no equivalent for", block.location)

    def build_extras(self) -> None:
        r = self.report
        for post in self.build.post_processors:
            kind = post.labels[0] if post.labels else post.type
            if kind == "manifest":
                r.approximated(
                    f"post-processor {kind}", "AIB records each output as a run output (runOutputName)", post.location
                )
            else:
                r.dropped(
                    f"post-processor {kind}",
                    "AIB has no post-processors: run it on the AIB output yourself",
                    post.location,
                )
        if self.build.error_cleanup is not None:
            r.dropped(
                "error-cleanup-provisioner",
                "AIB has no cleanup step on failure (errorHandling only keeps or deletes the build VM)",
                self.build.error_cleanup.location,
            )
        for other in self.build.other:
            r.dropped(f"build.{other.type}", "not an AIB concept", other.location)
        for other in self.config.other:
            if other.type == "packer":
                r.approximated(
                    "packer {}", "required_plugins and version constraints: AIB brings its own Packer", other.location
                )
            elif other.type == "data":
                label = " ".join([other.type, *other.labels])
                r.approximated(
                    label,
                    "a data source is read when Packer builds (HCP Packer's registry, a cloud API): where the "
                    f"configuration uses it, the AIB template has a placeholder <{'.'.join(other.labels)}...> to "
                    "fill in",
                    other.location,
                )
            else:
                label = " ".join([other.type, *other.labels])
                r.dropped(label, "not an AIB concept", other.location)

    # ------------------------------------------------------------------------------------------- steps
    def steps(self) -> None:
        provisioners = [p for p in self.build.provisioners(self.source) if self.applies(p)]
        provisioners = self.own_deprovision(provisioners)
        provisioners = self.foreign_deprovision(provisioners)
        validations: list[model.Step] = []
        for p in provisioners:
            validator = any(c.startswith(VALIDATION_MARK) for c in p.comments)
            steps = StepMapper(self, p, validator).steps()
            if validator:
                validations += steps
            else:
                if validations:
                    self.report.approximated(
                        provisioner_subject(p),
                        "follows an in-VM validation: AIB runs every customizer before the validations",
                        p.location,
                    )
                self.tpl.customize += steps
        if self.override is not None:
            self.tpl.customize.append(self.override)
        if validations:
            self.tpl.validate = model.Validation(in_vm_validations=validations)
        for i, s in enumerate(self.tpl.customize):
            s.path = ("properties", "customize", i)
        for i, s in enumerate(validations):
            s.path = ("properties", "validate", "inVMValidations", i)

    def applies(self, p: Section) -> bool:
        names = [self.source.full_name] if self.config.format == "hcl2" else [self.source.name]
        only = p.value("only")
        excl = p.value("except")
        subject = provisioner_subject(p)
        if isinstance(only, list) and only and not any(n in only for n in names):
            self.report.mapped(subject, f"not run for {names[0]} (only = {only}), as in Packer", p.where("only"))
            return False
        if isinstance(excl, list) and any(n in excl for n in names):
            self.report.mapped(subject, f"not run for {names[0]} (except = {excl}), as in Packer", p.where("except"))
            return False
        override = p.value("override")
        if isinstance(override, dict):
            for n in [*names, self.source.name]:
                if isinstance(override.get(n), dict):
                    for k, v in override[n].items():
                        p.attrs[k] = Attr(v, p.where("override"))
                    self.report.mapped(f"{subject}.override", f"applied for {n}, as in Packer", p.where("override"))
                    break
        return True

    def own_deprovision(self, provisioners: list[Section]) -> list[Section]:
        """aibx's staging and running of the deprovision script (AIB → HCL) are AIB's implicit steps again."""
        kind = "powershell" if self.windows else "shell"
        out = list(provisioners)
        if out and _inline(out[0], kind) == idioms.stage_deprovision(self.tpl.os_type):
            self.report.mapped(
                provisioner_subject(out[0]), "AIB stages its default deprovision script itself", out[0].location
            )
            out.pop(0)
        if out and _inline(out[-1], kind) == idioms.run_deprovision(self.tpl.os_type):
            self.report.mapped(
                provisioner_subject(out[-1]), "AIB runs its deprovision step last by itself", out[-1].location
            )
            out.pop()
        return out

    def foreign_deprovision(self, provisioners: list[Section]) -> list[Section]:
        """A trailing waagent or Sysprep provisioner does what AIB's implicit last step does."""
        if not provisioners:
            return provisioners
        last = provisioners[-1]
        kind = last.labels[0] if last.labels else ""
        lines = _inline(last, kind)
        if lines is None:
            return provisioners
        subject = provisioner_subject(last)
        if kind == "shell" and not self.windows:
            hits = [i for i, line in enumerate(lines) if _WAAGENT.search(line)]
            if not hits:
                return provisioners
            deprov = [lines[i] for i in hits]
            rest = [line for i, line in enumerate(lines) if i not in hits]
            if all(_WAAGENT_DEFAULT.match(line) for line in deprov):
                self.report.approximated(
                    f"{subject}: {deprov[0].strip()}",
                    "AIB runs the same waagent deprovision as its implicit last step: not repeated",
                    last.location,
                )
            else:
                self.override = self.override_step(deprov)
                self.report.approximated(
                    f"{subject}: deprovision",
                    f"becomes AIB's deprovision script ({model.LINUX_DEPROVISION_PATH}), which AIB runs last",
                    last.location,
                )
            if not rest:
                return provisioners[:-1]
            trimmed = Section(last.type, last.labels, dict(last.attrs), last.blocks, last.location, last.comments)
            trimmed.attrs["inline"] = Attr(rest, last.where("inline"))
            return [*provisioners[:-1], trimmed]
        if kind == "powershell" and self.windows and any(_SYSPREP.search(line) for line in lines):
            self.report.approximated(
                f"{subject}: Sysprep",
                f"becomes AIB's deprovision script ({model.WINDOWS_DEPROVISION_PATH}), which AIB runs last",
                last.location,
            )
            self.override = self.override_step(lines)
            return provisioners[:-1]
        return provisioners

    def override_step(self, lines: list[str]) -> model.Step:
        """A customizer that writes ``lines`` as AIB's deprovision script (AIB runs that file last)."""
        if self.windows:
            text = "\n".join(lines) + "\n"
            return model.PowerShellStep(
                name="deprovision (from Packer)",
                inline=idioms.windows_write_text(model.WINDOWS_DEPROVISION_PATH, text),
            )
        content = ("\n".join(lines) + "\n").encode("utf-8")
        return model.ShellStep(
            name="deprovision (from Packer)",
            inline=idioms.linux_write_file(model.LINUX_DEPROVISION_PATH, content),
        )

    # ------------------------------------------------------------------------------------------- files
    def local_file(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else Path(self.options.cwd) / p

    def publish(self, local: Path | None, name: str, data: bytes | None = None) -> tuple[str, str]:
        """(URI, sha256) for a file published under --upload-base-uri."""
        assert self.options.upload_base_uri
        if local is not None:
            try:
                rel = local.resolve().relative_to(Path(self.config.root).resolve())
                name = rel.as_posix()
            except ValueError:
                name = local.name
            upload = Upload(name, local=str(local))
        else:
            upload = Upload(name, data=data)
        existing = self.uploads.get(name)
        if existing is not None and existing.sha256 != upload.sha256:
            stem, dot, ext = name.rpartition(".")
            n = 2
            while f"{stem}-{n}{dot}{ext}" in self.uploads:
                n += 1
            name = f"{stem}-{n}{dot}{ext}" if dot else f"{name}-{n}"
            upload = Upload(name, upload.data, upload.local)
        self.uploads[name] = upload
        base = self.options.upload_base_uri.rstrip("/")
        return f"{base}/{quote(name)}", upload.sha256

    def next_id(self) -> int:
        self.counter += 1
        return self.counter


def _inline(p: Section, kind: str) -> list[str] | None:
    if (p.labels[0] if p.labels else "") != kind:
        return None
    lines = p.value("inline")
    if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
        return None
    if p.value("script") or p.value("scripts"):
        return None
    return lines
