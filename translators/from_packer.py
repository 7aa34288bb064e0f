"""A Packer configuration (HCL2 or legacy JSON, evaluated) → AIB image templates (the model): one per
``azure-arm`` source of each selected build.

Every field and provisioner gets a report entry. The mapping is in docs/translate.md; the essentials:

* shell: ``inline``, ``script(s)``, ``environment_vars``/``env``, ``execute_command`` (``sudo sh -c '{{ .Vars }}
  {{ .Path }}'`` and friends), ``inline_shebang``, ``valid_exit_codes`` become a Shell customizer that stages
  the script and runs Packer's own command line for it, so it really runs as root when Packer's did;
* powershell: ``elevated_user`` → ``runElevated`` (``SYSTEM`` → ``runAsSystem``), ``valid_exit_codes``,
  ``environment_vars`` as ``$env:`` lines;
* local files (scripts, file uploads) need a URI: with ``upload_base_uri`` each file gets one plus its sha256
  and is listed in ``Translation.uploads`` for the caller to publish; otherwise small text files are inlined;
* a trailing waagent/Sysprep provisioner is AIB's own deprovision step: dropped when it does what AIB's default
  does, else it becomes AIB's override script;
* aibx's own idioms from AIB → HCL (staging and running the deprovision script, script and file downloads,
  validators marked by a comment) are read back as what they were.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import posixpath
import re
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aibx.translators import idioms
from aibx.translators.aib import NEWEST_API_VERSION
from aibx.translators.hcl_eval import BuildValue
from aibx.translators.packer_config import Attr, Build, PackerConfig, Section, SourceRef
from aibx.translators.report import Location, Report
from aibx.translators.to_packer import VALIDATION_MARK

from aibx import model
from aibx.document import Unresolved

INLINE_LIMIT = 64 * 1024  # bytes of a local file inlined into the template without --upload-base-uri
DEFAULT_EXECUTE = "chmod +x {{.Path}}; {{.Vars}} {{.Path}}"
DEFAULT_SHEBANG = "/bin/sh -e"
_GO_FIELD = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")
_SUDO_PASSWORD_PIPE = re.compile(r"^\s*echo\s+(?:'[^']*'|\"[^\"]*\"|\S+)\s*\|\s*(?=.*\bsudo\b)")
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
_UNSUPPORTED_PROVISIONERS = {
    "shell-local": "it runs on the machine running Packer, not on the VM: run it before or after the AIB build",
    "ansible": "AIB cannot run Ansible from outside the VM: install and run Ansible in a Shell customizer",
    "ansible-local": "AIB has no Ansible customizer: run ansible-playbook in a Shell customizer",
    "chef-client": "AIB has no Chef customizer", "chef-solo": "AIB has no Chef customizer",
    "puppet-masterless": "AIB has no Puppet customizer", "puppet-server": "AIB has no Puppet customizer",
    "salt-masterless": "AIB has no Salt customizer", "inspec": "AIB has no InSpec customizer",
    "converge": "AIB has no Converge customizer", "azure-dtlartifact": "DevTest Labs artifacts need DevTest Labs",
    "hcp-sbom": "AIB has no SBOM step",
}  # fmt: skip
_META = {"name", "only", "except", "pause_before", "max_retries", "timeout", "override", "type", "pause_after"}


@dataclass
class AibOptions:
    only: list[str] = field(default_factory=list)
    upload_base_uri: str | None = None
    api_version: str = NEWEST_API_VERSION
    cwd: str = "."
    inline_limit: int = INLINE_LIMIT


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
            out.append(_FromPacker(config, build, source, options).run())
    return out


def source_names(build: Build, source: SourceRef) -> list[str]:
    names = [source.full_name, source.name]
    if build.name:
        names += [f"{build.name}.{source.full_name}", f"{build.name}.{source.name}", build.name]
    return names


def _selected(patterns: list[str], build: Build, source: SourceRef) -> bool:
    names = source_names(build, source)
    return any(fnmatch.fnmatchcase(n, p) for p in patterns for n in names)


def _truthy(value: Any) -> bool:
    """Packer reads "true"/"1" strings as booleans in JSON templates."""
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "1"))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _sane_name(text: str) -> str:
    return _NOT_RUN_OUTPUT.sub("-", text).strip("-")[:64] or "output"


# ----------------------------------------------------------------------------------------------- one source
class _FromPacker:
    def __init__(self, config: PackerConfig, build: Build, source: SourceRef, options: AibOptions) -> None:
        self.config = config
        self.build = build
        self.source = source
        self.options = options
        self.sec = source.section
        full = ".".join(x for x in (build.name, source.type, source.name) if x)
        self.name = full
        self.report = Report(config.path, "aib", name=full, secrets=set(config.secrets))
        self.uploads: dict[str, Upload] = {}
        self.tpl = model.ImageTemplate(file=config.path, name=source.name, api_version=options.api_version)
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
        self.build_extras()
        self.report.approximated(
            "variables and locals",
            "evaluated now: the AIB template holds their values (ARM parameters are not generated)",
        )
        self.report.entries.sort(key=lambda e: (e.location.file != "", e.location.file, e.location.line))
        tr.template = self.tpl
        tr.uploads = list(self.uploads.values())
        return tr

    def operating_system(self) -> None:
        attr = self.take("os_type")
        comm = _text(self.sec.value("communicator")) or ""
        value = _text(attr.value) if attr else None
        if value and value.lower() in ("windows", "linux"):
            self.tpl.os_type = model.OsType.WINDOWS if value.lower() == "windows" else model.OsType.LINUX
            self.tpl.os_reason = f"os_type {value}"
            self.report.mapped(self.subject("os_type"), f"the image is {self.tpl.os_type.value}", attr.location)
        elif comm == "winrm":
            self.tpl.os_type, self.tpl.os_reason = model.OsType.WINDOWS, "communicator winrm"
        else:
            self.tpl.os_type, self.tpl.os_reason = model.OsType.LINUX, "os_type not given"
        key = "winrm_username" if self.tpl.os_type is model.OsType.WINDOWS else "ssh_username"
        user = _text(self.sec.value(key))
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
            self.used.add("shared_image_gallery")
            g = sec.sections("shared_image_gallery")[0]
            gid = _text(g.value("id"))
            if gid:
                image_version_id: model.Text = gid
            elif g.get("community_gallery_image_id") or g.get("direct_shared_gallery_image_id"):
                r.dropped(
                    self.subject("shared_image_gallery"),
                    "community and direct shared gallery sources are not AIB SharedImageVersion sources",
                    g.location,
                )
                return
            else:
                sub = (
                    self.required("subscription", g.get("subscription")) if g.get("subscription") else self.subscription
                )
                version = _text(g.value("image_version")) or "latest"
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
        elif sec.get("image_url"):
            self.take("image_url")
            r.dropped(self.subject("image_url"), "AIB cannot start from a VHD URL", self.loc("image_url"))
        else:
            r.dropped(
                f"source.{self.source.full_name}",
                "no source image (image_publisher, custom_managed_image_name or shared_image_gallery)",
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

    def placement(self) -> None:
        r = self.report
        loc_attr = self.take("location")
        build_rg = self.take("build_resource_group_name")
        temp_rg = self.take("temp_resource_group_name")
        if loc_attr is not None and (_text(loc_attr.value) or isinstance(loc_attr.value, Unresolved)):
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
            if attr is None or not _text(attr.value):
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
        if size is not None and (_text(size.value) or isinstance(size.value, Unresolved)):
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
        if extra is not None and isinstance(extra.value, list):
            self.tpl.additional_data_disks = [int(x) if str(x).isdigit() else None for x in extra.value]
            r.mapped(self.subject("disk_additional_size"), "additionalDataDisks", extra.location)
        ids = self.take("user_assigned_managed_identities")
        if ids is not None and isinstance(ids.value, list) and ids.value:
            vm.user_assigned_identities = [x for x in ids.value if isinstance(x, (str, Unresolved))]
            r.mapped(self.subject("user_assigned_managed_identities"), "vmProfile.userAssignedIdentities", ids.location)
        vnet = self.take("virtual_network_name")
        subnet = self.take("virtual_network_subnet_name")
        vnet_rg = self.take("virtual_network_resource_group_name")
        if vnet is not None and _text(vnet.value):
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
                if attr is not None and _text(attr.value):
                    r.dropped(self.subject(key), "needs virtual_network_name", attr.location)
        if vm != model.VmProfile():
            self.tpl.vm_profile = vm

    def outputs(self) -> None:
        r, sec = self.report, self.sec
        base = _sane_name(self.source.name)
        mi_name = self.take("managed_image_name")
        mi_rg = self.take("managed_image_resource_group_name")
        if mi_name is not None and (_text(mi_name.value) or isinstance(mi_name.value, Unresolved)):
            image_id = self.join(
                "/subscriptions/",
                self.subscription,
                "/resourceGroups/",
                self.required("managed_image_resource_group_name", mi_rg),
                "/providers/Microsoft.Compute/images/",
                self.required("managed_image_name", mi_name),
            )
            self.tpl.distribute.append(
                model.ManagedImageDistributor(
                    image_id=image_id, location=self.tpl.location, run_output_name=f"{base}-managed-image"
                )
            )
            r.mapped(
                self.subject("managed_image_name"),
                f"distribute ManagedImage (runOutputName {base}-managed-image)",
                mi_name.location,
            )
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
            self.tpl.distribute.append(model.VhdDistributor(run_output_name=f"{base}-vhd"))
            r.approximated(
                self.subject("capture_container_name"),
                f"distribute VHD (runOutputName {base}-vhd): AIB writes the VHD to its staging storage account "
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
        dist = model.SharedImageDistributor(run_output_name=f"{base}-gallery-image")
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
        storage = _text(d.value("storage_account_type"))
        regions = [x for x in (d.value("replication_regions") or []) if isinstance(x, (str, Unresolved))]
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
        if count is not None and not dist.target_regions:
            r.dropped(
                self.subject("shared_image_gallery_replica_count"), "needs replication regions", replicas.location
            )  # type: ignore[union-attr]
        elif count is not None and targets:
            r.approximated(
                self.subject("shared_image_gallery_replica_count"),
                "each target_region block gives its own replicas",
                replicas.location,  # type: ignore[union-attr]
            )
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
        self.tpl.distribute.append(dist)

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
                        _provisioner_subject(p),
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
        subject = _provisioner_subject(p)
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
                _provisioner_subject(out[0]), "AIB stages its default deprovision script itself", out[0].location
            )
            out.pop(0)
        if out and _inline(out[-1], kind) == idioms.run_deprovision(self.tpl.os_type):
            self.report.mapped(
                _provisioner_subject(out[-1]), "AIB runs its deprovision step last by itself", out[-1].location
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
        subject = _provisioner_subject(last)
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


def _provisioner_subject(p: Section) -> str:
    kind = p.labels[0] if p.labels else p.type
    name = p.value("name")
    line = f'provisioner[{p.index}] "{kind}"' if p.index is not None else f'provisioner "{kind}"'
    return f'{line} "{name}"' if isinstance(name, str) and name else line


def _inline(p: Section, kind: str) -> list[str] | None:
    if (p.labels[0] if p.labels else "") != kind:
        return None
    lines = p.value("inline")
    if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
        return None
    if p.value("script") or p.value("scripts"):
        return None
    return lines


# ----------------------------------------------------------------------------------------------- provisioners
class StepMapper:
    """One Packer provisioner → zero or more AIB steps, with its report entries."""

    def __init__(self, parent: _FromPacker, p: Section, validator: bool) -> None:
        self.parent = parent
        self.p = p
        self.validator = validator
        self.kind = p.labels[0] if p.labels else p.type
        self.report = parent.report
        self.subject = _provisioner_subject(p)
        self.used: set[str] = set(_META)
        name = p.value("name")
        self.name: str | None = name if isinstance(name, str) and name else None
        self.windows = parent.windows

    def take(self, key: str) -> Any:
        self.used.add(key)
        return self.p.value(key)

    def note(self, status: str, key: str, detail: str) -> None:
        getattr(self.report, status)(f"{self.subject}.{key}", detail, self.p.where(key))

    def steps(self) -> list[model.Step]:
        handler = {
            "shell": self.shell,
            "powershell": self.powershell,
            "file": self.file,
            "windows-restart": self.windows_restart,
            "windows-update": self.windows_update,
            "windows-shell": self.windows_shell,
            "sleep": self.sleep,
            "breakpoint": self.breakpoint,
        }.get(self.kind)
        if handler is None:
            why = _UNSUPPORTED_PROVISIONERS.get(self.kind, "AIB has no equivalent customizer")
            self.report.dropped(self.subject, why, self.p.location)
            return []
        before = self.pause("pause_before")
        main = handler()
        after = self.pause("pause_after")
        self.meta()
        if main and self.validator:
            allowed = (model.ShellStep, model.PowerShellStep, model.FileStep)
            for s in main:
                if not isinstance(s, allowed):
                    self.report.dropped(self.subject, f"AIB has no {s.kind} validator", self.p.location)
            main = [s for s in main if isinstance(s, allowed)]
        leftovers = [k for k in self.p.attrs if k not in self.used] if main else []
        for key in leftovers:
            self.note("dropped", key, f"the {self.kind} provisioner's {key} has no AIB equivalent")
        return [*before, *main, *after] if main else []

    def meta(self) -> None:
        retries = self.p.value("max_retries")
        if retries not in (None, 0, "0", ""):
            self.note("dropped", "max_retries", "AIB does not retry a customizer")
        timeout = self.p.value("timeout")
        if timeout not in (None, "", "0", "0s"):
            self.note(
                "dropped", "timeout", "AIB has no per-customizer timeout (buildTimeoutInMinutes bounds the build)"
            )

    def pause(self, key: str) -> list[model.Step]:
        value = self.p.value(key)
        if not isinstance(value, str) or not value:
            return []
        seconds = model.parse_duration(value)
        if seconds is None:
            self.note("dropped", key, f"{value!r} is not a duration")
            return []
        if seconds == 0:
            return []
        label = f"{self.name or self.kind}: {key} {value}"
        if self.windows:
            step: model.Step = model.PowerShellStep(name=label, inline=idioms.powershell_sleep(seconds))
        else:
            step = model.ShellStep(name=label, inline=idioms.shell_sleep(seconds))
        self.note("approximated", key, f"a {step.kind} customizer that sleeps {value}")
        return [step]

    def done(self, status: str, detail: str) -> None:
        if self.validator:
            detail += " (an in-VM validation, marked by aibx's comment)"
        getattr(self.report, status)(self.subject, detail, self.p.location)

    # ------------------------------------------------------------------------------------------- bodies
    def bodies(self) -> list[tuple[str, bytes | None, Path | None]] | None:
        """(label, content, local path) of each script: inline (one), script (one), scripts (many)."""
        inline = self.take("inline")
        script = self.take("script")
        scripts = self.take("scripts")
        given = [x for x in (inline, script, scripts) if x not in (None, [], "")]
        if len(given) != 1:
            self.done("dropped", "needs exactly one of inline, script and scripts")
            return None
        if inline not in (None, []):
            if not isinstance(inline, list) or not all(isinstance(x, str) for x in inline):
                self.done("dropped", "inline holds values only known while Packer builds: " + _unknown(inline))
                return None
            return [("inline", None, None)]
        paths = [script] if script not in (None, "") else scripts
        if not isinstance(paths, list) or not all(isinstance(x, str) for x in paths):
            self.done("dropped", "script paths are not known: " + _unknown(paths))
            return None
        out: list[tuple[str, bytes | None, Path | None]] = []
        for raw in paths:
            local = self.parent.local_file(raw)
            try:
                data = local.read_bytes()
            except OSError as exc:
                self.done("dropped", f"script {raw}: {exc.strerror or exc} (Packer would refuse it too)")
                return None
            out.append((raw, data, local))
        return out

    def env(self) -> dict[str, str] | None:
        env: dict[str, str] = {}
        pairs = self.take("environment_vars") or []
        if not isinstance(pairs, list):
            pairs = [pairs]
        for item in pairs:
            if not isinstance(item, str) or "=" not in item:
                self.note("dropped", "environment_vars", f"not KEY=VALUE: {_unknown(item)}")
                return None
            k, _, v = item.partition("=")
            env[k] = v
        mapping = self.take("env") or {}
        if isinstance(mapping, dict):
            for k, v in mapping.items():
                if not isinstance(v, str):
                    self.note("dropped", "env", f"{k}: {_unknown(v)}")
                    return None
                env[k] = v
        return env

    def fits_inline(self, data: bytes, raw: str) -> bool:
        if len(data) > self.parent.options.inline_limit:
            self.done(
                "dropped",
                f"{raw} is {len(data)} bytes: too large to inline; pass --upload-base-uri to publish it",
            )
            return False
        return True

    # ------------------------------------------------------------------------------------------- shell
    def shell(self) -> list[model.Step]:
        if self.windows:
            self.done("dropped", "a shell provisioner on a Windows image: use powershell")
            return []
        bodies = self.bodies()
        env = self.env()
        if bodies is None or env is None:
            return []
        execute = self.take("execute_command")
        shebang = self.take("inline_shebang") or DEFAULT_SHEBANG
        codes = self.take("valid_exit_codes")
        skip_clean = _truthy(self.take("skip_clean"))
        binary = _truthy(self.take("binary"))
        remote_folder = self.take("remote_folder") or "/tmp"
        remote_file = self.take("remote_file")
        remote_path = self.take("remote_path")
        self.take("env_var_format")
        self.take("use_env_var_file")
        for key, how in (
            (
                "expect_disconnect",
                "AIB has no expect_disconnect: a reboot in this step may fail it on AIB "
                "(aibx run waits for the VM to come back)",
            ),
            ("start_retry_timeout", "AIB's own retry timeout applies"),
        ):
            value = self.take(key)
            if value not in (None, "") and (key != "expect_disconnect" or _truthy(value)):
                self.note("approximated", key, how)
        plain_exec = execute is None or _normal(execute) == _normal(DEFAULT_EXECUTE)
        codes_list = [int(c) for c in codes] if isinstance(codes, list) and codes else [0]
        inline = bodies[0][1] is None
        lines = self.p.value("inline") if inline else None
        if plain_exec and codes_list == [0] and inline and shebang == DEFAULT_SHEBANG:
            own = self.own_idiom(lines)
            if own is not None:
                return [own]
            step = model.ShellStep(name=self.name, inline=[*idioms.shell_exports(env), *lines])
            self.done("mapped", "Shell inline" + (" (environment_vars as export lines)" if env else ""))
            return [step]
        upload = self.parent.options.upload_base_uri
        if plain_exec and codes_list == [0] and not inline and not env and upload:
            out: list[model.Step] = []
            for i, (raw, _data, local) in enumerate(bodies):
                uri, sha = self.parent.publish(local, raw)
                name = self.name if len(bodies) == 1 else f"{self.name or 'shell'} ({i + 1}/{len(bodies)})"
                out.append(model.ShellStep(name=name, script_uri=uri, sha256_checksum=sha))
            self.done("mapped", f"Shell scriptUri with sha256Checksum ({len(bodies)} published file(s))")
            return out
        # the general case: stage each script on the VM and run it with Packer's own command line
        command = execute if isinstance(execute, str) else DEFAULT_EXECUTE
        how: list[str] = []
        stripped = _SUDO_PASSWORD_PIPE.sub("", command)
        if stripped != command:
            command = stripped
            how.append("the sudo password pipe is not needed (AIB's build user has passwordless sudo)")
        unknown = [f for f in _GO_FIELD.findall(command) if f not in ("Path", "Vars", "EnvVarFile")]
        if unknown or "{{" in _GO_FIELD.sub("", command):
            self.note(
                "dropped", "execute_command", f"template fields aibx cannot fill: {', '.join(unknown) or command}"
            )
            return []
        pre: list[model.Step] = []
        script_lines: list[str] = []
        env_file = None
        if "EnvVarFile" in _GO_FIELD.findall(command):
            env_file = f"{remote_folder}/varfile_aibx_{self.parent.next_id()}.sh"
            script_lines += idioms.linux_write_file(
                env_file, "".join(f"{x}\n" for x in idioms.shell_exports(env)).encode()
            )
        for raw, data, local in bodies:
            n = self.parent.next_id()
            path = remote_path or f"{remote_folder}/{remote_file or f'script_aibx_{n}.sh'}"
            if data is None:
                content = ("#!" + shebang + "\n" + "\n".join(lines) + "\n").encode("utf-8")
            else:
                content = data if binary else data.replace(b"\r\n", b"\n")
                if not binary and not content.endswith(b"\n"):
                    content += b"\n"
            if data is not None and upload:
                uri, sha = self.parent.publish(local, raw)
                label = f"{self.name or 'shell'}: upload {Path(raw).name}"
                pre.append(model.FileStep(name=label, source_uri=uri, destination=path, sha256_checksum=sha))
            else:
                if data is not None and not self.fits_inline(content, raw):
                    return []
                script_lines += idioms.linux_write_file(path, content)
            rendered = _render(command, path, idioms.packer_vars(env), env_file)
            script_lines.append(f"chmod 0755 {idioms.sh_quote(path)}")
            if codes_list == [0]:
                script_lines.append(rendered)
            else:
                allowed = " ".join(str(c) for c in codes_list)
                script_lines += [
                    "aibx_rc=0",
                    f"{rendered} || aibx_rc=$?",
                    f'case " {allowed} " in *" $aibx_rc "*) ;; *) exit "$aibx_rc" ;; esac',
                ]
            if not skip_clean:
                script_lines.append(f"rm -f {idioms.sh_quote(path)}")
        if env_file and not skip_clean:
            script_lines.append(f"rm -f {idioms.sh_quote(env_file)}")
        how_text = "Shell inline that stages the script" + ("s" if len(bodies) > 1 else "")
        how_text += " (published as File customizers)" if pre else ""
        how_text += " and runs Packer's command line for it: " + _render(command, "SCRIPT", "VARS ", "ENVFILE")
        if codes_list != [0]:
            how_text += f"; valid_exit_codes {codes_list} checked in the script"
        if shebang != DEFAULT_SHEBANG and inline:
            how_text += f"; shebang {shebang}"
        self.done("approximated", "; ".join([how_text, *how]))
        return [*pre, model.ShellStep(name=self.name, inline=script_lines)]

    def own_idiom(self, lines: list[str]) -> model.Step | None:
        """aibx's scriptUri and File downloads (AIB → HCL) read back as what they were."""
        os_type = self.parent.tpl.os_type
        dl = idioms.recognise_script_download(lines, os_type)
        if dl is not None:
            cls = model.PowerShellStep if self.windows else model.ShellStep
            self.done("mapped", f"{cls.kind} scriptUri (aibx's download idiom)")
            return cls(name=self.name, script_uri=dl.uri, sha256_checksum=dl.sha256)
        fl = idioms.recognise_file_download(lines, os_type)
        if fl is not None:
            self.done("mapped", "File sourceUri (aibx's download idiom)")
            return model.FileStep(name=self.name, source_uri=fl.uri, destination=fl.path, sha256_checksum=fl.sha256)
        return None

    # ------------------------------------------------------------------------------------------- powershell
    def powershell(self) -> list[model.Step]:
        bodies = self.bodies()
        env = self.env()
        if bodies is None or env is None:
            return []
        step = model.PowerShellStep(name=self.name)
        how: list[str] = []
        status = "mapped"
        user = self.take("elevated_user")
        self.take("elevated_password")
        if user not in (None, ""):
            if isinstance(user, str) and user.lower() in ("system", "nt authority\\system"):
                step.run_elevated, step.run_as_system = True, True
                how.append("elevated_user SYSTEM as runElevated + runAsSystem")
            elif user == BuildValue("User") or (isinstance(user, str) and user == self.parent.username):
                step.run_elevated = True
                how.append("elevated_user (the build user) as runElevated")
            else:
                step.run_elevated = True
                status = "approximated"
                how.append(f"elevated_user {_unknown(user)}: runElevated runs as AIB's build user instead")
        codes = self.take("valid_exit_codes")
        if isinstance(codes, list) and codes:
            step.valid_exit_codes = [int(c) for c in codes if str(c).lstrip("-").isdigit()]
            how.append("valid_exit_codes")
        policy = self.take("execution_policy")
        if isinstance(policy, str) and policy.lower() not in ("bypass", ""):
            self.note("approximated", "execution_policy", "AIB runs PowerShell with execution policy bypass")
        debug = self.take("debug_mode")
        prefix: list[str] = []
        if isinstance(debug, int) and debug > 0:
            prefix.append(f"Set-PsDebug -Trace {debug}")
            how.append("debug_mode as Set-PsDebug")
        for key, detail in (
            ("use_pwsh", "AIB runs Windows PowerShell (powershell.exe), not pwsh"),
            ("execute_command", "AIB runs the script with its own PowerShell command line"),
            ("elevated_execute_command", "AIB runs the script with its own PowerShell command line"),
            ("start_retry_timeout", "AIB's own retry timeout applies"),
            ("remote_path", "AIB chooses where the script goes"),
            ("remote_env_var_path", "AIB chooses where the script goes"),
            ("skip_clean", "AIB removes its temporary files itself"),
            ("env_var_format", "environment variables are set as $env: lines"),
            ("elevated_env_var_format", "environment variables are set as $env: lines"),
        ):
            value = self.take(key)
            if value not in (None, False, ""):
                self.note("approximated", key, detail)
        env_lines = idioms.powershell_env(env)
        if env:
            how.append("environment_vars as $env: lines")
        if bodies[0][1] is None:
            lines = self.p.value("inline")
            own = self.own_idiom(lines) if not env and not prefix else None
            if isinstance(own, model.PowerShellStep):
                own.run_elevated, own.run_as_system = step.run_elevated, step.run_as_system
                own.valid_exit_codes = step.valid_exit_codes
            if own is not None:
                return [own]
            step.inline = [*prefix, *env_lines, *lines]
            self.done(status, "PowerShell inline" + (f" ({'; '.join(how)})" if how else ""))
            return [step]
        upload = self.parent.options.upload_base_uri
        out: list[model.Step] = []
        if upload and not env and not prefix:
            for i, (raw, _data, local) in enumerate(bodies):
                uri, sha = self.parent.publish(local, raw)
                s = model.PowerShellStep(
                    name=step.name if len(bodies) == 1 else f"{step.name or 'powershell'} ({i + 1}/{len(bodies)})",
                    script_uri=uri,
                    sha256_checksum=sha,
                    run_elevated=step.run_elevated,
                    run_as_system=step.run_as_system,
                    valid_exit_codes=step.valid_exit_codes,
                )
                out.append(s)
            self.done(status, "PowerShell scriptUri with sha256Checksum" + (f" ({'; '.join(how)})" if how else ""))
            return out
        lines_all: list[str] = [*prefix, *env_lines]
        valid = ", ".join(str(c) for c in (step.valid_exit_codes or [0]))
        for i, (raw, data, _local) in enumerate(bodies):
            assert data is not None
            if not self.fits_inline(data, raw):
                return []
            path = f"C:\\Windows\\Temp\\aibx-{self.parent.next_id()}-{Path(raw).name}"
            if not path.lower().endswith(".ps1"):
                path += ".ps1"
            lines_all += [
                *_windows_stage(path, data),
                f"& {idioms.ps_quote(path)}",
                "$aibxExitCode = $LASTEXITCODE",
                f"Remove-Item -Force -LiteralPath {idioms.ps_quote(path)}",
            ]
            if i < len(bodies) - 1:  # Packer stops at the first script that fails
                lines_all.append(f"if (@({valid}) -notcontains $aibxExitCode) {{ exit $aibxExitCode }}")
        lines_all.append("exit $aibxExitCode")
        step.inline = lines_all
        self.done(
            "approximated",
            "PowerShell inline that writes the script to the VM and runs it (pass --upload-base-uri to publish "
            "scripts instead)" + (f"; {'; '.join(how)}" if how else ""),
        )
        return [step]

    # ------------------------------------------------------------------------------------------- file
    def file(self) -> list[model.Step]:
        direction = self.take("direction")
        destination = self.take("destination")
        source = self.take("source")
        sources = self.take("sources")
        content = self.take("content")
        self.take("generated")
        if isinstance(direction, str) and direction.lower() == "download":
            self.done("dropped", "AIB cannot copy files from the VM to the machine running the build")
            return []
        if not isinstance(destination, str) or not destination:
            self.done("dropped", "destination is missing or unknown: " + _unknown(destination))
            return []
        if isinstance(content, str):
            return [self.write_step(destination, content.encode("utf-8"), "content")]
        paths = [source] if isinstance(source, str) and source else sources
        if not isinstance(paths, list) or not paths or not all(isinstance(x, str) for x in paths):
            self.done("dropped", "source is missing or unknown: " + _unknown(paths))
            return []
        out: list[model.Step] = []
        for raw in paths:
            local = self.parent.local_file(raw)
            target = destination
            if target.endswith(("/", "\\")) or len(paths) > 1:
                sep = "\\" if self.windows else "/"
                target = target.rstrip("/\\") + sep + local.name
            if local.is_dir():
                steps = self.directory(raw, local, destination)
                if steps is None:
                    return []
                out += steps
                continue
            try:
                data = local.read_bytes()
            except OSError as exc:
                self.done("dropped", f"{raw}: {exc.strerror or exc} (Packer would refuse it too)")
                return []
            if self.parent.options.upload_base_uri:
                uri, sha = self.parent.publish(local, raw)
                out.append(model.FileStep(name=self.name, source_uri=uri, destination=target, sha256_checksum=sha))
                continue
            if not self.fits_inline(data, raw):
                return []
            out.append(self.write_step(target, data, raw, report=False))
        if self.parent.options.upload_base_uri:
            self.done("mapped", "File customizer(s) with sourceUri and sha256Checksum (published files)")
        else:
            self.done(
                "approximated",
                "the file's content written by an inline step (pass --upload-base-uri to "
                "publish files as File customizers instead)",
            )
        return out

    def write_step(self, destination: str, data: bytes, what: str, report: bool = True) -> model.Step:
        if self.windows:
            # Packer's WinRM upload creates the parent folder; so does this
            folder = f"(Split-Path -Parent {idioms.ps_quote(destination)})"
            parent = f"New-Item -ItemType Directory -Force -Path {folder} | Out-Null"
            lines = [parent, *idioms.windows_write_file(destination, data)]
            step: model.Step = model.PowerShellStep(name=self.name, inline=lines)
        else:
            step = model.ShellStep(name=self.name, inline=idioms.linux_write_file(destination, data))
        if report:
            self.done("approximated", f"{step.kind} inline that writes the {what} to {destination}")
        return step

    def directory(self, raw: str, local: Path, destination: str) -> list[model.Step] | None:
        """A folder: published as an archive with an extraction step (rsync semantics of a trailing /)."""
        if not self.parent.options.upload_base_uri:
            self.done(
                "dropped",
                f"{raw} is a folder: AIB copies single files; pass --upload-base-uri to publish "
                "it as an archive with an extraction step",
            )
            return None
        into = destination if raw.endswith(("/", "\\")) else posixpath.join(destination.rstrip("/\\"), local.name)
        n = self.parent.next_id()
        if self.windows:
            data = _zip(local)
            uri, sha = self.parent.publish(None, f"{local.name}-{n}.zip", data)
            staged = f"C:\\Windows\\Temp\\aibx-{local.name}-{n}.zip"
            extract: model.Step = model.PowerShellStep(
                name=f"{self.name or 'file'}: extract {local.name}",
                inline=[
                    f"Expand-Archive -Force -LiteralPath {idioms.ps_quote(staged)} "
                    f"-DestinationPath {idioms.ps_quote(into)}",
                    f"Remove-Item -Force -LiteralPath {idioms.ps_quote(staged)}",
                ],
            )
        else:
            data = _tar(local)
            uri, sha = self.parent.publish(None, f"{local.name}-{n}.tar.gz", data)
            staged = f"/tmp/aibx-{local.name}-{n}.tar.gz"
            extract = model.ShellStep(
                name=f"{self.name or 'file'}: extract {local.name}",
                inline=[
                    f"mkdir -p {idioms.sh_quote(into)}",
                    f"tar -xzf {idioms.sh_quote(staged)} -C {idioms.sh_quote(into)}",
                    f"rm -f {idioms.sh_quote(staged)}",
                ],
            )
        upload = model.FileStep(
            name=f"{self.name or 'file'}: upload {local.name}", source_uri=uri, destination=staged, sha256_checksum=sha
        )
        return [upload, extract]

    # ------------------------------------------------------------------------------------------- windows
    def windows_restart(self) -> list[model.Step]:
        step = model.WindowsRestartStep(
            name=self.name,
            restart_command=_text(self.take("restart_command")),
            restart_check_command=_text(self.take("restart_check_command")),
            restart_timeout=_text(self.take("restart_timeout")),
        )
        if _truthy(self.take("check_registry")):
            self.note("dropped", "check_registry", "AIB's WindowsRestart does not check pending-reboot registry keys")
        if self.take("registry_keys"):
            self.note("dropped", "registry_keys", "AIB's WindowsRestart does not check registry keys")
        self.done("mapped", "WindowsRestart")
        return [step]

    def windows_update(self) -> list[model.Step]:
        filters = self.take("filters")
        limit = self.take("update_limit")
        step = model.WindowsUpdateStep(
            name=self.name,
            search_criteria=_text(self.take("search_criteria")),
            filters=[f for f in filters if isinstance(f, str)] if isinstance(filters, list) else None,
            update_limit=int(limit) if str(limit).isdigit() else None,
        )
        for key in ("update_max_retries", "restart_timeout", "username", "password"):
            if self.take(key) not in (None, ""):
                self.note("approximated", key, "AIB's Windows Update customizer uses its defaults")
        self.done("mapped", "WindowsUpdate")
        return [step]

    def windows_shell(self) -> list[model.Step]:
        bodies = self.bodies()
        env = self.env()
        if bodies is None or env is None:
            return []
        self.take("execute_command")
        self.take("remote_path")
        codes = self.take("valid_exit_codes")
        lines: list[str] = []
        for raw, data, _local in bodies:
            if data is None:
                text = "\r\n".join(self.p.value("inline")) + "\r\n"
            else:
                if not self.fits_inline(data, raw):
                    return []
                text = data.decode("utf-8", errors="replace")
            n = self.parent.next_id()
            path = f"C:\\Windows\\Temp\\aibx-windows-shell-{n}.cmd"
            sets = "".join(f'set "{k}={v}" && ' for k, v in env.items())
            lines += [
                *idioms.windows_write_text(path, text),
                f"cmd.exe /c {idioms.ps_quote(sets + path)}" if sets else f"cmd.exe /c {idioms.ps_quote(path)}",
                "$aibxExitCode = $LASTEXITCODE",
                f"Remove-Item -Force -LiteralPath {idioms.ps_quote(path)}",
                "if ($aibxExitCode -ne 0) { exit $aibxExitCode }",
            ]
        step = model.PowerShellStep(name=self.name, inline=lines)
        if isinstance(codes, list) and codes:
            step.valid_exit_codes = [int(c) for c in codes if str(c).isdigit()]
        self.done("approximated", "PowerShell inline that writes the commands to a .cmd file and runs it with cmd.exe")
        return [step]

    def sleep(self) -> list[model.Step]:
        value = self.take("duration")
        seconds = model.parse_duration(value) if isinstance(value, str) else None
        if seconds is None:
            self.done("dropped", f"duration {value!r} is not a duration")
            return []
        lines = idioms.powershell_sleep(seconds) if self.windows else idioms.shell_sleep(seconds)
        cls = model.PowerShellStep if self.windows else model.ShellStep
        self.done("mapped", f"a {cls.kind} customizer that sleeps {value}")
        return [cls(name=self.name, inline=lines)]

    def breakpoint(self) -> list[model.Step]:
        if _truthy(self.take("disable")):
            self.done("mapped", "disabled: nothing to do")
            return []
        self.take("note")
        self.done("dropped", "AIB cannot pause a build for debugging")
        return []


def _windows_stage(path: str, data: bytes) -> list[str]:
    """Write a script: its lines as PowerShell strings for plain text, base64 otherwise."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return idioms.windows_write_file(path, data)
    if "{{" in text or "\r" in text.replace("\r\n", ""):  # a template to AIB's Packer, or bare CRs
        return idioms.windows_write_file(path, data)
    return idioms.windows_write_text(path, text, bom=not text.isascii())


def _normal(command: str) -> str:
    return re.sub(r"\s+", " ", _GO_FIELD.sub(lambda m: "{{." + m.group(1) + "}}", command)).strip()


def _render(command: str, path: str, env_vars: str, env_file: str | None) -> str:
    """Packer's execute_command with its template fields filled in."""
    values = {"Path": path, "Vars": env_vars.rstrip(" ") if env_vars else "", "EnvVarFile": env_file or ""}
    out = _GO_FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), command)
    return re.sub(r"  +", " ", out).strip()


def _unknown(value: Any) -> str:
    if isinstance(value, (Unresolved, BuildValue)):
        from aibx.translators.hcl_eval import describe_unknown

        return describe_unknown(value)
    if isinstance(value, list):
        for v in value:
            if isinstance(v, (Unresolved, BuildValue)):
                return _unknown(v)
    return repr(value)


def _tar(folder: Path) -> bytes:
    """A reproducible .tar.gz of the folder: fixed times and owners, so its sha256 depends on content only."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_file():
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    return buf.getvalue()


def _zip(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
                z.writestr(info, path.read_bytes())
    return buf.getvalue()
