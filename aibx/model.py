"""The image template model: typed, version-neutral, the one place that knows what a template means.

``from_document()`` builds it from a loaded document and never raises: a field with the wrong type is left at
its "not given" value (validation has already said why). Every node keeps its JSON path, so later stages can
point at the source. Values a template did not give stay ``None``; ``effective_*`` properties apply AIB's
defaults. A value that could not be resolved is kept as ``Unresolved``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union, cast

from aibx.document import Document, Unresolved
from aibx.jsonc import JsonPath

Text = Union[str, Unresolved]  # noqa: UP007 - used at run time in isinstance checks


class OsType(str, enum.Enum):
    LINUX = "Linux"
    WINDOWS = "Windows"


DEFAULT_BUILD_TIMEOUT_MINUTES = 240
MAX_BUILD_TIMEOUT_MINUTES = 960
DEFAULT_RESTART_COMMAND = 'shutdown /r /f /t 0 /c "packer restart"'
DEFAULT_RESTART_TIMEOUT = "5m"
DEFAULT_SEARCH_CRITERIA = "BrowseOnly=0 and IsInstalled=0"
DEFAULT_UPDATE_LIMIT = 1000
LINUX_DEPROVISION_PATH = "/tmp/DeprovisioningScript.sh"
WINDOWS_DEPROVISION_PATH = r"c:\DeprovisioningScript.ps1"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """'5m' -> 300.0, '1h30m' -> 5400.0, '90s' -> 90.0; None when it is not a duration (Go syntax, as Packer)."""
    text = text.strip()
    if not text:
        return None
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos > 0 else None


# ----------------------------------------------------------------------------------------------- source
@dataclass
class PlanInfo:
    plan_name: Text | None = None
    plan_product: Text | None = None
    plan_publisher: Text | None = None


@dataclass
class Source:
    kind: ClassVar[str] = ""
    path: JsonPath = ()


@dataclass
class PlatformImageSource(Source):
    kind: ClassVar[str] = "PlatformImage"
    publisher: Text | None = None
    offer: Text | None = None
    sku: Text | None = None
    version: Text | None = None
    plan_info: PlanInfo | None = None


@dataclass
class ManagedImageSource(Source):
    kind: ClassVar[str] = "ManagedImage"
    image_id: Text | None = None


@dataclass
class SharedImageVersionSource(Source):
    kind: ClassVar[str] = "SharedImageVersion"
    image_version_id: Text | None = None


@dataclass
class IsoSource(Source):
    kind: ClassVar[str] = "ISO"
    source_uri: Text | None = None
    sha256_checksum: Text | None = None


@dataclass
class UnknownSource(Source):
    type_name: str = ""


# ----------------------------------------------------------------------------------------------- steps
@dataclass
class Step:
    """A customizer or an in-VM validator."""

    kind: ClassVar[str] = ""
    name: Text | None = None
    path: JsonPath = ()

    @property
    def label(self) -> str:
        """The name as written, or the type and position (``Shell #2``)."""
        if isinstance(self.name, str) and self.name:
            return self.name
        index = self.path[-1] if self.path and isinstance(self.path[-1], int) else None
        return f"{self.kind or 'step'} #{index + 1}" if index is not None else self.kind


@dataclass
class ShellStep(Step):
    kind: ClassVar[str] = "Shell"
    script_uri: Text | None = None
    inline: Sequence[Text] | None = None  # a list; Sequence, so a list[str] is one too
    sha256_checksum: Text | None = None
    # engine-only, never written to AIB JSON: Packer's expect_disconnect, for a step translated from a Packer
    # configuration (aibx.packer_input). None (AIB): a restart during the step is ridden out; True: the same
    # (confirmed by a new boot id, where Packer accepts any disconnect); False: a restart fails the step, as in Packer
    expect_disconnect: bool | None = field(default=None, metadata={"engine_only": True})


@dataclass
class PowerShellStep(Step):
    kind: ClassVar[str] = "PowerShell"
    script_uri: Text | None = None
    inline: Sequence[Text] | None = None
    sha256_checksum: Text | None = None
    run_elevated: bool | None = None
    run_as_system: bool | None = None
    valid_exit_codes: list[int] | None = None

    @property
    def effective_valid_exit_codes(self) -> list[int]:
        return self.valid_exit_codes if self.valid_exit_codes else [0]


@dataclass
class FileStep(Step):
    kind: ClassVar[str] = "File"
    source_uri: Text | None = None
    destination: Text | None = None
    sha256_checksum: Text | None = None


@dataclass
class WindowsRestartStep(Step):
    kind: ClassVar[str] = "WindowsRestart"
    restart_command: Text | None = None
    restart_check_command: Text | None = None
    restart_timeout: Text | None = None

    @property
    def effective_restart_command(self) -> Text:
        return self.restart_command or DEFAULT_RESTART_COMMAND

    @property
    def effective_restart_timeout_seconds(self) -> float:
        text = self.restart_timeout if isinstance(self.restart_timeout, str) and self.restart_timeout else "5m"
        return parse_duration(text) or 300.0


@dataclass
class WindowsUpdateStep(Step):
    kind: ClassVar[str] = "WindowsUpdate"
    search_criteria: Text | None = None
    filters: list[Text] | None = None
    update_limit: int | None = None

    @property
    def effective_search_criteria(self) -> Text:
        return self.search_criteria or DEFAULT_SEARCH_CRITERIA

    @property
    def effective_update_limit(self) -> int:
        return self.update_limit or DEFAULT_UPDATE_LIMIT


@dataclass
class UnknownStep(Step):
    type_name: str = ""


STEP_TYPES: dict[str, type[Step]] = {
    cls.kind.lower(): cls for cls in (ShellStep, PowerShellStep, FileStep, WindowsRestartStep, WindowsUpdateStep)
}
WINDOWS_ONLY_STEPS = (PowerShellStep, WindowsRestartStep, WindowsUpdateStep)


# ----------------------------------------------------------------------------------------------- distribute
@dataclass
class TargetRegion:
    name: Text | None = None
    replica_count: int | None = None
    storage_account_type: Text | None = None
    path: JsonPath = ()


@dataclass
class Versioning:
    scheme: Text | None = None
    major: int | None = None
    path: JsonPath = ()


@dataclass
class Distributor:
    kind: ClassVar[str] = ""
    run_output_name: Text | None = None
    artifact_tags: dict[str, Text] | None = None
    path: JsonPath = ()


@dataclass
class ManagedImageDistributor(Distributor):
    kind: ClassVar[str] = "ManagedImage"
    image_id: Text | None = None
    location: Text | None = None


@dataclass
class SharedImageDistributor(Distributor):
    kind: ClassVar[str] = "SharedImage"
    gallery_image_id: Text | None = None
    replication_regions: list[Text] | None = None
    target_regions: list[TargetRegion] | None = None
    versioning: Versioning | None = None
    exclude_from_latest: bool | None = None
    storage_account_type: Text | None = None
    replication_mode: Text | None = None


@dataclass
class VhdDistributor(Distributor):
    kind: ClassVar[str] = "VHD"
    uri: Text | None = None


@dataclass
class UnknownDistributor(Distributor):
    type_name: str = ""


# ----------------------------------------------------------------------------------------------- the rest
@dataclass
class VnetConfig:
    subnet_id: Text | None = None
    proxy_vm_size: Text | None = None
    container_instance_subnet_id: Text | None = None


@dataclass
class VmProfile:
    vm_size: Text | None = None
    os_disk_size_gb: int | None = None
    user_assigned_identities: list[Text] | None = None
    vnet_config: VnetConfig | None = None


@dataclass
class Validation:
    continue_distribute_on_failure: bool | None = None
    source_validation_only: bool | None = None
    in_vm_validations: list[Step] = field(default_factory=list)


@dataclass
class Optimize:
    vm_boot_state: Text | None = None
    workload_state: Text | None = None
    workload_script_uri: Text | None = None
    workload_sha256_checksum: Text | None = None


@dataclass
class ErrorHandling:
    on_customizer_error: Text | None = None
    on_validation_error: Text | None = None


@dataclass
class Identity:
    type: Text | None = None
    user_assigned_identities: list[Text] = field(default_factory=list)


@dataclass
class ImageTemplate:
    file: str = ""
    name: str | None = None
    api_version: str | None = None
    location: Text | None = None
    tags: dict[str, Text] | None = None
    identity: Identity | None = None
    source: Source | None = None
    customize: list[Step] = field(default_factory=list)
    validate: Validation | None = None
    optimize: Optimize | None = None
    distribute: list[Distributor] = field(default_factory=list)
    vm_profile: VmProfile | None = None
    build_timeout_in_minutes: int | None = None
    staging_resource_group: Text | None = None
    error_handling: ErrorHandling | None = None
    auto_run_state: Text | None = None
    managed_resource_tags: dict[str, Text] | None = None
    additional_data_disks: list[int | None] | None = None
    os_type: OsType = OsType.LINUX
    # why os_type has its value ("publisher MicrosoftWindowsServer", "--os", ...)
    os_reason: str = ""
    # the document it came from, for diagnostics and unresolved lookups
    document: Document | None = field(default=None, repr=False, compare=False)

    @property
    def effective_build_timeout_minutes(self) -> int:
        value = self.build_timeout_in_minutes
        return value if value and value > 0 else DEFAULT_BUILD_TIMEOUT_MINUTES

    @property
    def deprovision_path(self) -> str:
        return WINDOWS_DEPROVISION_PATH if self.os_type is OsType.WINDOWS else LINUX_DEPROVISION_PATH

    def steps(self) -> Iterator[Step]:
        yield from self.customize
        if self.validate:
            yield from self.validate.in_vm_validations


# ----------------------------------------------------------------------------------------------- building
class _Reader:
    """Case-insensitive, type-tolerant access to one JSON object of the document."""

    def __init__(self, value: object, path: JsonPath) -> None:
        self.obj: Mapping[str, object] = value if isinstance(value, dict) else {}
        self.path = path
        self._lower = {k.lower(): k for k in self.obj}

    def key(self, name: str) -> str | None:
        return self._lower.get(name.lower())

    def raw(self, name: str) -> object:
        k = self.key(name)
        return self.obj.get(k) if k is not None else None

    def sub(self, name: str) -> _Reader | None:
        k = self.key(name)
        if k is None or not isinstance(self.obj.get(k), dict):
            return None
        return _Reader(self.obj[k], (*self.path, k))

    def child_path(self, name: str) -> JsonPath:
        return (*self.path, self.key(name) or name)

    def text(self, *names: str) -> Text | None:
        for name in names:
            v = self.raw(name)
            if isinstance(v, (str, Unresolved)):
                return v
        return None

    def boolean(self, name: str) -> bool | None:
        v = self.raw(name)
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.lower() in ("true", "false"):
            return v.lower() == "true"
        return None

    def integer(self, name: str) -> int | None:
        return _as_int(self.raw(name))

    def texts(self, name: str) -> list[Text] | None:
        v = self.raw(name)
        if isinstance(v, (str, Unresolved)):  # the docs show "inline": "<commands>" as a plain string
            return [v]
        if not isinstance(v, list):
            return None
        return [x for x in v if isinstance(x, (str, Unresolved))]

    def mapping(self, name: str) -> dict[str, Text] | None:
        v = self.raw(name)
        if not isinstance(v, dict):
            return None
        return {k: x for k, x in v.items() if isinstance(x, (str, Unresolved))}

    def items(self, name: str) -> list[_Reader]:
        k = self.key(name)
        v = self.obj.get(k) if k else None
        if not isinstance(v, list):
            return []
        return [_Reader(x, (*self.path, k or "", i)) for i, x in enumerate(v)]


def _as_int(v: object) -> int | None:
    """AIB takes numbers; real templates also write "3010" - accepted, and validation warns (AIB027)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and re.fullmatch(r"\s*-?\d{1,4000}\s*", v):  # Python converts at most 4300 digits
        return int(v)
    return None


def _source(r: _Reader | None) -> Source | None:
    if r is None:
        return None
    t = r.raw("type")
    t = t.lower() if isinstance(t, str) else ""
    if t == "platformimage":
        plan = r.sub("planInfo")
        return PlatformImageSource(
            path=r.path,
            publisher=r.text("publisher"),
            offer=r.text("offer"),
            sku=r.text("sku"),
            version=r.text("version"),
            plan_info=PlanInfo(plan.text("planName"), plan.text("planProduct"), plan.text("planPublisher"))
            if plan
            else None,
        )
    if t == "managedimage":
        return ManagedImageSource(path=r.path, image_id=r.text("imageId"))
    if t == "sharedimageversion":
        return SharedImageVersionSource(path=r.path, image_version_id=r.text("imageVersionId"))
    if t == "iso":
        return IsoSource(path=r.path, source_uri=r.text("sourceUri"), sha256_checksum=r.text("sha256Checksum"))
    return UnknownSource(path=r.path, type_name=str(r.raw("type") or ""))


def _step(r: _Reader) -> Step:
    """The step of a customizer (or validator) entry: its type's reader from ``STEP_READERS``, found through
    ``STEP_TYPES``; a type aibx does not know is an ``UnknownStep``."""
    t = r.raw("type")
    cls = STEP_TYPES.get(t.lower()) if isinstance(t, str) else None
    name = r.text("name")
    if cls is None:
        return UnknownStep(name=name, path=r.path, type_name=str(t or ""))
    return STEP_READERS[cls](r, name)


def _shell_step(r: _Reader, name: Text | None) -> Step:
    return ShellStep(
        name=name,
        path=r.path,
        script_uri=r.text("scriptUri", "script"),
        inline=r.texts("inline"),
        sha256_checksum=r.text("sha256Checksum"),
    )


def _powershell_step(r: _Reader, name: Text | None) -> Step:
    codes_raw = r.raw("validExitCodes")
    codes = None
    if isinstance(codes_raw, list):
        codes = [c for c in (_as_int(x) for x in codes_raw) if c is not None]
    else:
        code = _as_int(codes_raw)
        codes = None if code is None else [code]
    return PowerShellStep(
        name=name,
        path=r.path,
        script_uri=r.text("scriptUri", "script"),
        inline=r.texts("inline"),
        sha256_checksum=r.text("sha256Checksum"),
        run_elevated=r.boolean("runElevated"),
        run_as_system=r.boolean("runAsSystem"),
        valid_exit_codes=codes,
    )


def _file_step(r: _Reader, name: Text | None) -> Step:
    return FileStep(
        name=name,
        path=r.path,
        source_uri=r.text("sourceUri"),
        destination=r.text("destination"),
        sha256_checksum=r.text("sha256Checksum"),
    )


def _windows_restart_step(r: _Reader, name: Text | None) -> Step:
    return WindowsRestartStep(
        name=name,
        path=r.path,
        restart_command=r.text("restartCommand"),
        restart_check_command=r.text("restartCheckCommand"),
        restart_timeout=r.text("restartTimeout"),
    )


def _windows_update_step(r: _Reader, name: Text | None) -> Step:
    return WindowsUpdateStep(
        name=name,
        path=r.path,
        search_criteria=r.text("searchCriteria"),
        filters=r.texts("filters"),
        update_limit=r.integer("updateLimit"),
    )


# a step type -> how its fields are read from the template (a new customizer type: its class in STEP_TYPES, a reader)
STEP_READERS: dict[type[Step], Callable[[_Reader, Text | None], Step]] = {
    ShellStep: _shell_step,
    PowerShellStep: _powershell_step,
    FileStep: _file_step,
    WindowsRestartStep: _windows_restart_step,
    WindowsUpdateStep: _windows_update_step,
}


def _distributor(r: _Reader) -> Distributor:
    t = r.raw("type")
    t = t.lower() if isinstance(t, str) else ""
    common: dict[str, Any] = {
        "run_output_name": r.text("runOutputName"),
        "artifact_tags": r.mapping("artifactTags"),
        "path": r.path,
    }
    if t == "managedimage":
        return ManagedImageDistributor(image_id=r.text("imageId"), location=r.text("location"), **common)
    if t == "sharedimage":
        versioning = r.sub("versioning")
        regions = None
        if r.key("targetRegions") is not None:
            regions = [
                TargetRegion(
                    name=x.text("name"),
                    replica_count=x.integer("replicaCount"),
                    storage_account_type=x.text("storageAccountType"),
                    path=x.path,
                )
                for x in r.items("targetRegions")
            ]
        return SharedImageDistributor(
            gallery_image_id=r.text("galleryImageId"),
            replication_regions=r.texts("replicationRegions"),
            target_regions=regions,
            versioning=Versioning(versioning.text("scheme"), versioning.integer("major"), versioning.path)
            if versioning
            else None,
            exclude_from_latest=r.boolean("excludeFromLatest"),
            storage_account_type=r.text("storageAccountType"),
            replication_mode=r.text("replicationMode"),
            **common,
        )
    if t == "vhd":
        return VhdDistributor(uri=r.text("uri"), **common)
    return UnknownDistributor(type_name=str(r.raw("type") or ""), **common)


def from_document(doc: Document, os_override: OsType | None = None) -> ImageTemplate:
    top = _Reader(doc.resource, ())
    props = top.sub("properties") or _Reader({}, ("properties",))
    identity = top.sub("identity")
    vm = props.sub("vmProfile")
    vnet = vm.sub("vnetConfig") if vm else None
    val = props.sub("validate")
    opt = props.sub("optimize")
    errs = props.sub("errorHandling")
    tpl = ImageTemplate(
        file=doc.file,
        name=doc.name,
        api_version=doc.api_version,
        location=top.text("location"),
        tags=top.mapping("tags"),
        identity=Identity(
            type=identity.text("type"),
            user_assigned_identities=list(cast("dict[str, object]", identity.raw("userAssignedIdentities")).keys())
            if isinstance(identity.raw("userAssignedIdentities"), dict)
            else [],
        )
        if identity
        else None,
        source=_source(props.sub("source")),
        customize=[_step(r) for r in props.items("customize")],
        validate=Validation(
            continue_distribute_on_failure=val.boolean("continueDistributeOnFailure"),
            source_validation_only=val.boolean("sourceValidationOnly"),
            in_vm_validations=[_step(r) for r in val.items("inVMValidations")],
        )
        if val
        else None,
        optimize=Optimize(
            vm_boot_state=(opt.sub("vmBoot") or _Reader({}, ())).text("state"),
            workload_state=(opt.sub("workload") or _Reader({}, ())).text("state"),
            workload_script_uri=(opt.sub("workload") or _Reader({}, ())).text("scriptUri"),
            workload_sha256_checksum=(opt.sub("workload") or _Reader({}, ())).text("sha256Checksum"),
        )
        if opt
        else None,
        distribute=[_distributor(r) for r in props.items("distribute")],
        vm_profile=VmProfile(
            vm_size=vm.text("vmSize"),
            os_disk_size_gb=vm.integer("osDiskSizeGB"),
            user_assigned_identities=vm.texts("userAssignedIdentities"),
            vnet_config=VnetConfig(
                subnet_id=vnet.text("subnetId"),
                proxy_vm_size=vnet.text("proxyVmSize"),
                container_instance_subnet_id=vnet.text("containerInstanceSubnetId"),
            )
            if vnet
            else None,
        )
        if vm
        else None,
        build_timeout_in_minutes=props.integer("buildTimeoutInMinutes"),
        staging_resource_group=props.text("stagingResourceGroup"),
        error_handling=ErrorHandling(errs.text("onCustomizerError"), errs.text("onValidationError")) if errs else None,
        auto_run_state=(props.sub("autoRun") or _Reader({}, ())).text("state"),
        managed_resource_tags=props.mapping("managedResourceTags"),
        additional_data_disks=[x.integer("sizeGB") for x in props.items("additionalDataDisks")]
        if props.key("additionalDataDisks")
        else None,
        document=doc,
    )
    tpl.os_type, tpl.os_reason = infer_os(tpl, os_override)
    for step in tpl.steps():  # what the AIB format cannot carry, given by the reader (aibx.packer_input)
        for name, value in doc.engine_hints.get(tuple(step.path), {}).items():
            if hasattr(step, name):
                setattr(step, name, value)
    return tpl


_WINDOWS_PUBLISHERS = ("microsoftwindows", "microsoftvisualstudio", "microsoftsqlserver", "microsoftdynamics")


def source_os(source: Source | None) -> tuple[OsType | None, str]:
    """What the source image says about the OS, if anything."""
    if isinstance(source, PlatformImageSource):
        publisher = source.publisher if isinstance(source.publisher, str) else ""
        offer = source.offer if isinstance(source.offer, str) else ""
        if publisher.lower().startswith(_WINDOWS_PUBLISHERS) or "windows" in offer.lower():
            return OsType.WINDOWS, f"source publisher {publisher}"
        if publisher:
            return OsType.LINUX, f"source publisher {publisher}"
    return None, ""


def steps_os(tpl: ImageTemplate) -> tuple[OsType | None, str]:
    """What the customizer types say: PowerShell, WindowsRestart and WindowsUpdate mean Windows; Shell Linux."""
    windows = [s for s in tpl.steps() if isinstance(s, WINDOWS_ONLY_STEPS)]
    linux = [s for s in tpl.steps() if isinstance(s, ShellStep)]
    if windows and not linux:
        return OsType.WINDOWS, f"{windows[0].kind} customizer"
    if linux and not windows:
        return OsType.LINUX, "Shell customizer"
    return None, ""


def infer_os(tpl: ImageTemplate, override: OsType | None = None) -> tuple[OsType, str]:
    if override is not None:
        return override, "--os"
    for os_type, reason in (source_os(tpl.source), steps_os(tpl)):
        if os_type is not None:
            return os_type, reason
    return OsType.LINUX, "nothing in the template says otherwise"
