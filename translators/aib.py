"""The model as an AIB image template: a bare ``Microsoft.VirtualMachineImages/imageTemplates`` resource, or an
ARM deployment template around it (``--arm``).

Reading AIB templates is the loader's job (aibx.loader + aibx.validation); this module writes them. Fields the
chosen apiVersion does not know are pruned against the swagger tables and reported as dropped. A value the
translation could not know (an ``Unresolved``) is written as a ``<placeholder>`` in a bare resource, which
``aibx validate -p NAME=VALUE`` substitutes, and as an ARM parameter with ``--arm``. A secret (the value of a
sensitive Packer variable) is written the same way, never as its value: a ``secureString`` parameter with
``--arm``; a ``<placeholder>`` in a bare resource, reported as dropped (``protect_secrets``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, cast

from aibx import model
from aibx.document import Unresolved
from aibx.loader import RESOURCE_TYPE
from aibx.swagger_tables import API_VERSIONS, ROOT, SCHEMAS
from aibx.translators.report import NOWHERE, Location, Report, Status
from aibx.translators.secrets import Reference, SecretFinder, variable_name

NEWEST_API_VERSION = API_VERSIONS[-1]
DEPLOYMENT_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
_PLACEHOLDER = re.compile(r"<([A-Za-z][A-Za-z0-9_.\-]*)>")


def template_to_resource(tpl: model.ImageTemplate, api_version: str = NEWEST_API_VERSION) -> dict[str, Any]:
    """The resource as a JSON-ready dict; Unresolved values stay ``Unresolved`` objects (see ``finish``)."""
    res: dict[str, Any] = {"type": RESOURCE_TYPE, "apiVersion": api_version}
    if tpl.name:
        res["name"] = tpl.name
    _put(res, "location", tpl.location)
    _put(res, "tags", _mapping(tpl.tags))
    if tpl.identity:
        identity: dict[str, Any] = {}
        _put(identity, "type", tpl.identity.type)
        if tpl.identity.user_assigned_identities:
            identity["userAssignedIdentities"] = {i: {} for i in tpl.identity.user_assigned_identities}
        res["identity"] = identity
    props: dict[str, Any] = {}
    _put(props, "buildTimeoutInMinutes", tpl.build_timeout_in_minutes)
    if tpl.vm_profile:
        props["vmProfile"] = _vm_profile(tpl.vm_profile)
    if tpl.source:
        props["source"] = _source(tpl.source)
    props["customize"] = [_step(s) for s in tpl.customize]
    if tpl.validate:
        val: dict[str, Any] = {}
        _put(val, "continueDistributeOnFailure", tpl.validate.continue_distribute_on_failure)
        _put(val, "sourceValidationOnly", tpl.validate.source_validation_only)
        if tpl.validate.in_vm_validations:
            val["inVMValidations"] = [_step(s) for s in tpl.validate.in_vm_validations]
        props["validate"] = val
    if tpl.optimize:
        opt: dict[str, Any] = {}
        if tpl.optimize.vm_boot_state is not None:
            opt["vmBoot"] = {"state": tpl.optimize.vm_boot_state}
        workload: dict[str, Any] = {}
        _put(workload, "state", tpl.optimize.workload_state)
        _put(workload, "scriptUri", tpl.optimize.workload_script_uri)
        _put(workload, "sha256Checksum", tpl.optimize.workload_sha256_checksum)
        if workload:
            opt["workload"] = workload
        props["optimize"] = opt
    props["distribute"] = [_distributor(d) for d in tpl.distribute]
    _put(props, "stagingResourceGroup", tpl.staging_resource_group)
    if tpl.error_handling:
        errs: dict[str, Any] = {}
        _put(errs, "onCustomizerError", tpl.error_handling.on_customizer_error)
        _put(errs, "onValidationError", tpl.error_handling.on_validation_error)
        props["errorHandling"] = errs
    if tpl.auto_run_state is not None:
        props["autoRun"] = {"state": tpl.auto_run_state}
    _put(props, "managedResourceTags", _mapping(tpl.managed_resource_tags))
    if tpl.additional_data_disks is not None:
        props["additionalDataDisks"] = [{"sizeGB": s} if s is not None else {} for s in tpl.additional_data_disks]
    res["properties"] = props
    return res


def _put(obj: dict[str, Any], key: str, value: object) -> None:
    if value is not None:
        obj[key] = value


def _mapping(value: dict[str, model.Text] | None) -> dict[str, Any] | None:
    return dict(value) if value is not None else None


def _vm_profile(vm: model.VmProfile) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _put(out, "vmSize", vm.vm_size)
    _put(out, "osDiskSizeGB", vm.os_disk_size_gb)
    _put(out, "userAssignedIdentities", vm.user_assigned_identities)
    if vm.vnet_config:
        vnet: dict[str, Any] = {}
        _put(vnet, "subnetId", vm.vnet_config.subnet_id)
        _put(vnet, "proxyVmSize", vm.vnet_config.proxy_vm_size)
        _put(vnet, "containerInstanceSubnetId", vm.vnet_config.container_instance_subnet_id)
        out["vnetConfig"] = vnet
    return out


def _source(src: model.Source) -> dict[str, Any]:
    if isinstance(src, model.UnknownSource):
        return {"type": src.type_name}
    out: dict[str, Any] = {"type": src.kind}
    if isinstance(src, model.PlatformImageSource):
        _put(out, "publisher", src.publisher)
        _put(out, "offer", src.offer)
        _put(out, "sku", src.sku)
        _put(out, "version", src.version)
        if src.plan_info:
            plan: dict[str, Any] = {}
            _put(plan, "planName", src.plan_info.plan_name)
            _put(plan, "planProduct", src.plan_info.plan_product)
            _put(plan, "planPublisher", src.plan_info.plan_publisher)
            out["planInfo"] = plan
    elif isinstance(src, model.ManagedImageSource):
        _put(out, "imageId", src.image_id)
    elif isinstance(src, model.SharedImageVersionSource):
        _put(out, "imageVersionId", src.image_version_id)
    elif isinstance(src, model.IsoSource):
        _put(out, "sourceUri", src.source_uri)
        _put(out, "sha256Checksum", src.sha256_checksum)
    return out


def _step(step: model.Step) -> dict[str, Any]:
    out: dict[str, Any] = {"type": step.type_name if isinstance(step, model.UnknownStep) else step.kind}
    _put(out, "name", step.name)
    if isinstance(step, (model.ShellStep, model.PowerShellStep)):
        _put(out, "scriptUri", step.script_uri)
        _put(out, "inline", step.inline)
        _put(out, "sha256Checksum", step.sha256_checksum)
    if isinstance(step, model.PowerShellStep):
        _put(out, "runElevated", step.run_elevated)
        _put(out, "runAsSystem", step.run_as_system)
        _put(out, "validExitCodes", step.valid_exit_codes)
    elif isinstance(step, model.FileStep):
        _put(out, "sourceUri", step.source_uri)
        _put(out, "destination", step.destination)
        _put(out, "sha256Checksum", step.sha256_checksum)
    elif isinstance(step, model.WindowsRestartStep):
        _put(out, "restartCommand", step.restart_command)
        _put(out, "restartCheckCommand", step.restart_check_command)
        _put(out, "restartTimeout", step.restart_timeout)
    elif isinstance(step, model.WindowsUpdateStep):
        _put(out, "searchCriteria", step.search_criteria)
        _put(out, "filters", step.filters)
        _put(out, "updateLimit", step.update_limit)
    return out


def _distributor(dist: model.Distributor) -> dict[str, Any]:
    out: dict[str, Any] = {"type": dist.type_name if isinstance(dist, model.UnknownDistributor) else dist.kind}
    if isinstance(dist, model.ManagedImageDistributor):
        _put(out, "imageId", dist.image_id)
        _put(out, "location", dist.location)
    elif isinstance(dist, model.SharedImageDistributor):
        _put(out, "galleryImageId", dist.gallery_image_id)
        _put(out, "replicationRegions", dist.replication_regions)
        if dist.target_regions is not None:
            regions = []
            for r in dist.target_regions:
                region: dict[str, Any] = {}
                _put(region, "name", r.name)
                _put(region, "replicaCount", r.replica_count)
                _put(region, "storageAccountType", r.storage_account_type)
                regions.append(region)
            out["targetRegions"] = regions
        if dist.versioning:
            versioning: dict[str, Any] = {}
            _put(versioning, "scheme", dist.versioning.scheme)
            _put(versioning, "major", dist.versioning.major)
            out["versioning"] = versioning
        _put(out, "excludeFromLatest", dist.exclude_from_latest)
        _put(out, "storageAccountType", dist.storage_account_type)
        _put(out, "replicationMode", dist.replication_mode)
    elif isinstance(dist, model.VhdDistributor):
        _put(out, "uri", dist.uri)
    _put(out, "runOutputName", dist.run_output_name)
    _put(out, "artifactTags", _mapping(dist.artifact_tags))
    return out


# ----------------------------------------------------------------------------------------------- apiVersion
def prune_to_api_version(resource: dict[str, Any], api_version: str, report: Report) -> None:
    """Remove the fields ``api_version`` does not know, and say so in the report."""
    defs = SCHEMAS[api_version]
    _prune(resource, {"t": "ref", "ref": ROOT}, defs, "", api_version, report)


def _prune(value: Any, spec: dict, defs: dict, path: str, version: str, report: Report) -> None:
    if spec.get("t") == "ref":
        spec = defs.get(spec["ref"], {})
    if spec.get("t") == "array" and isinstance(value, list):
        for i, item in enumerate(value):
            _prune(item, spec["items"], defs, f"{path}[{i}]", version, report)
        return
    if not isinstance(value, dict) or spec.get("t") != "object":
        return
    if "disc" in spec:
        kind = value.get(spec["disc"])
        target = spec["variants"].get(kind) if isinstance(kind, str) else None
        if target is None:
            report.dropped(path, f'type "{kind}" does not exist in apiVersion {version}')
            return
        spec = defs[target]
    props: dict[str, dict] = spec.get("props", {})
    for key in list(value):
        child = f"{path}.{key}" if path else key
        if key in props:
            _prune(value[key], props[key], defs, child, version, report)
        elif "map" in spec or (not path and key in ("type", "apiVersion", "name")):
            continue
        else:
            del value[key]
            report.dropped(child, f"apiVersion {version} has no such field; use a newer --api-version")


# ----------------------------------------------------------------------------------------------- output
@dataclass(frozen=True)
class Placeholder:
    """An open value inside a string: ``<name>`` in a bare resource, ``parameters('name')`` with ``--arm``."""

    name: str
    reason: str
    secure: bool = False


@dataclass(frozen=True)
class Pieces:
    """A string of literal text and placeholders that is not a plain ``Unresolved`` (it holds a secret)."""

    parts: tuple[str | Placeholder, ...]


def protect_secrets(resource: dict[str, Any], report: Report, *, arm: bool) -> dict[str, Any]:
    """The resource with every secret (``report.secret_sources``) replaced by a placeholder of a secure
    parameter; each secret written so gets a report entry (AIB077): approximated with ``--arm`` (a secureString
    parameter), dropped in a bare resource (which has no secret mechanism: a ``<placeholder>`` stands there)."""
    finder = SecretFinder(report.secret_sources)
    if not finder:
        return resource
    used: dict[str, str] = {}  # source → parameter name

    def placeholder(source: str) -> Placeholder:
        name = used.setdefault(source, variable_name(source))
        if _from_environment(source, report):
            return Placeholder(name, f"value of the environment variable {source} (not written)", secure=True)
        return Placeholder(name, f"secret: value of the Packer variable {source} (sensitive)", secure=True)

    def pieces(text: str) -> list[str | Placeholder]:
        return [placeholder(p.source) if isinstance(p, Reference) else p for p in finder.split(text)]

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            parts = pieces(value)
            return value if parts == [value] else Pieces(tuple(parts))
        if isinstance(value, Unresolved):  # a secret beside an open value
            parts = _unresolved_parts(value, report.secure_names)
            split = [q for p in parts for q in (pieces(p) if isinstance(p, str) else [p])]
            return value if split == parts else Pieces(tuple(split))
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    protected = walk(resource)
    reported = {(e.subject, e.code) for e in report.entries}
    for source, name in used.items():
        if (f'variable "{source}" (sensitive)', "AIB077") in reported:
            continue
        declared = report.secure_locations.get(re.split(r"[.\[]", source, maxsplit=1)[0], NOWHERE)
        if _from_environment(source, report):
            _report_environment_value(report, source, name, declared, arm=arm)
        elif arm:
            report.add(
                Status.APPROXIMATED,
                f'variable "{source}" (sensitive)',
                f"never written: [parameters('{name}')], a secureString parameter of the deployment; pass it when "
                f"deploying (--parameters {name}=VALUE). AIB keeps customizer text in the image template resource, "
                "readable by whoever may read the resource",
                declared,
                code="AIB077",
            )
        else:
            report.add(
                Status.DROPPED,
                f'variable "{source}" (sensitive)',
                f"its value is not written: a bare AIB template has no secrets, so the placeholder <{name}> stands "
                f"there; fill it in before deploying (aibx validate -p {name}=VALUE), or translate with --arm for a "
                "secureString parameter",
                declared,
                code="AIB077",
            )
    return protected


def _from_environment(source: str, report: Report) -> bool:
    return re.split(r"[.\[]", source, maxsplit=1)[0] in report.environment_sources


def _report_environment_value(report: Report, source: str, name: str, declared: Location, *, arm: bool) -> None:
    """AIB079: a value from the user's environment, written as a parameter (--arm) or a placeholder."""
    subject = f'environment variable "{source}"'
    if (subject, "AIB079") in {(e.subject, e.code) for e in report.entries}:
        return
    where = f"[parameters('{name}')], a secureString parameter" if arm else f"the placeholder <{name}>"
    detail = (
        f"its value comes from your environment, not from the configuration, so it is not written: {where} "
        f"stands there; pass it when deploying ({'--parameters' if arm else 'aibx validate -p'} {name}=VALUE), or "
        "translate with --allow-env-values to write the value"
    )
    report.add(Status.APPROXIMATED if arm else Status.DROPPED, subject, detail, declared, code="AIB079")


def _unresolved_parts(u: Unresolved, secure: Collection[str]) -> list[str | Placeholder]:
    parts: list[str | Placeholder] = []
    for i, piece in enumerate(_PLACEHOLDER.split(u.text)):
        if i % 2:
            parts.append(Placeholder(piece, u.reason, secure=piece in secure))
        elif piece:
            parts.append(piece)
    return parts


def finish(resource: dict[str, Any], *, arm: bool, secure: Collection[str] = ()) -> dict[str, Any]:
    """The document to write: the bare resource with placeholders, or an ARM deployment template. Parameters
    named in ``secure`` (sensitive Packer variables without a value) are secureString parameters."""
    if not arm:
        return _replace_unresolved(resource, _placeholder_text)
    parameters: dict[str, dict[str, Any]] = {}

    def to_expression(value: Unresolved | Pieces) -> str:
        parts = value.parts if isinstance(value, Pieces) else _unresolved_parts(value, secure)
        names = [p for p in parts if isinstance(p, Placeholder)]
        if not names:
            return _escape_arm("".join(p for p in parts if isinstance(p, str)))
        for p in names:
            parameters.setdefault(
                p.name, {"type": "secureString" if p.secure else "string", "metadata": {"description": p.reason}}
            )
        if len(parts) == 1:
            return f"[parameters('{names[0].name}')]"
        pattern, args = "", cast("list[str]", [])
        for part in parts:
            if isinstance(part, Placeholder):
                pattern += "{" + str(len(args)) + "}"
                args.append(f"parameters('{part.name}')")
            else:
                pattern += part.replace("{", "{{").replace("}", "}}").replace("'", "''")
        return f"[format('{pattern}', {', '.join(args)})]"

    converted = _replace_unresolved(resource, to_expression, escape=_escape_arm)
    body = {"type": converted.pop("type"), "apiVersion": converted.pop("apiVersion")}
    body["name"] = "[parameters('imageTemplateName')]"
    converted.pop("name", None)
    body.update(converted)
    name = resource.get("name") if isinstance(resource.get("name"), str) else "imageTemplate"
    parameters = {"imageTemplateName": {"type": "string", "defaultValue": name}, **parameters}
    return {
        "$schema": DEPLOYMENT_SCHEMA,
        "contentVersion": "1.0.0.0",
        "parameters": parameters,
        "resources": [body],
    }


def _placeholder_text(value: Unresolved | Pieces) -> str:
    if isinstance(value, Unresolved):
        return value.text
    return "".join(p if isinstance(p, str) else f"<{p.name}>" for p in value.parts)


def _escape_arm(text: str) -> str:
    """A literal string ARM would otherwise read as an expression: "[x]" is written "[[x]"."""
    return "[" + text if text.startswith("[") else text


def _replace_unresolved(
    value: Any, fn: Callable[[Unresolved | Pieces], str], escape: Callable[[str], str] | None = None
) -> Any:
    if isinstance(value, (Unresolved, Pieces)):
        return fn(value)
    if isinstance(value, dict):
        return {
            _replace_unresolved(k, fn, escape) if isinstance(k, Unresolved) else k: _replace_unresolved(v, fn, escape)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_replace_unresolved(v, fn, escape) for v in value]
    if isinstance(value, str) and escape is not None:
        return escape(value)
    return value


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
