"""What the AIB service accepted beyond its swagger files, and what it no longer accepts whatever the apiVersion.

The swagger file of an apiVersion is the contract as published, not the whole history: the preview API
2019-05-01-preview kept gaining features for a year (runElevated, sha256Checksum, osDiskSizeGB, the WindowsUpdate
customizer, vnetConfig) that its swagger never listed and that 2020-02-14 only wrote down in June 2020. Templates of
that time (Microsoft's own quickstarts among them) use them with 2019-05-01-preview, and the service built them.

Each entry names its evidence. Validation uses the table in two ways:

* ``ACCEPTED_EARLY``: a field or type that a later swagger defines is accepted on the listed older apiVersions
  (no AIB058; the value is checked against the definition of the swagger that first lists it);
* ``RETIRED``: service-wide changes that apply to every apiVersion, because a template is checked against the
  service as it runs today.

Where no entry gives evidence, a field of a later apiVersion is a warning on versions that ignore unknown fields
(before 2024-02-01) and an error from 2024-02-01 on, where the service rejects unknown fields.
"""

from __future__ import annotations

from dataclasses import dataclass

README_2020 = "https://github.com/danielsollondon/azvmimagebuilder/blob/master/README.md"
MAY_2020_ALERT = "https://github.com/danielsollondon/azvmimagebuilder/blob/master/MayServiceAlert01.md"
RELEASE_NOTES = "https://learn.microsoft.com/azure/virtual-machines/image-builder-api-update-release-notes"
JUNE_2020 = "https://github.com/danielsollondon/azvmimagebuilder (README, June 2020 Updates: NEW Api 2020-02-14)"


@dataclass(frozen=True)
class Feature:
    definition: str  # the swagger definition (aibx/swagger_tables.py) that holds the field or the variant
    name: str  # a property name, or "variant:TYPE" for a discriminator value
    versions: tuple[str, ...]  # the older apiVersions that accepted it
    since: str  # when the service announced it
    source: str  # where that is written


_PREVIEW = ("2019-05-01-preview",)
_DEC = f"{README_2020} (December 2019)"

ACCEPTED_EARLY: tuple[Feature, ...] = (
    # "December 2019 Updates": PowerShell elevated permissions; checksums for PowerShell, Shell and File
    Feature("ImageTemplatePowerShellCustomizer", "runElevated", _PREVIEW, "2019-12", _DEC),
    Feature("ImageTemplatePowerShellCustomizer", "sha256Checksum", _PREVIEW, "2019-12", _DEC),
    Feature("ImageTemplateShellCustomizer", "sha256Checksum", _PREVIEW, "2019-12", _DEC),
    Feature("ImageTemplateFileCustomizer", "sha256Checksum", _PREVIEW, "2019-12", _DEC),
    # "December 2019 Updates Part 2": osDiskSizeGB
    Feature("ImageTemplateVmProfile", "osDiskSizeGB", _PREVIEW, "2019-12", f"{README_2020} (December 2019 Part 2)"),
    # "March 2020 Updates": an existing VNET, the WindowsUpdate customizer
    Feature("ImageTemplateVmProfile", "vnetConfig", _PREVIEW, "2020-03", f"{README_2020} (March 2020)"),
    Feature("VirtualNetworkConfig", "subnetId", _PREVIEW, "2020-03", f"{README_2020} (March 2020)"),
    Feature("ImageTemplateCustomizer", "variant:WindowsUpdate", _PREVIEW, "2020-03", f"{README_2020} (March 2020)"),
)


@dataclass(frozen=True)
class Retirement:
    code: str  # the diagnostic that reports it
    what: str
    since: str
    source: str


IDENTITY_REQUIRED = Retirement(
    "AIB035",
    "a user-assigned identity is required: since 2020-05-26 AIB accepts no template without one",
    "2020-05-26",
    MAY_2020_ALERT,
)
RHEL_ISO_RETIRED = Retirement(
    "AIB036",
    "RHEL ISO sources are retired: since 2020-03-31 AIB accepts no template with one; use a RHEL "
    "(Bring Your Own Subscription) PlatformImage instead",
    "2020-03-31",
    f"{README_2020} (March 2020: RHEL ISO Source Deprecation)",
)
OLD_PREVIEW_RETIRED = Retirement(
    "AIB036",
    "apiVersions before 2019-05-01-preview are retired: since 2020-05-26 AIB accepts no template that uses one; "
    "use 2020-02-14 or later",
    "2020-05-26",
    MAY_2020_ALERT,
)
RETIRED: tuple[Retirement, ...] = (IDENTITY_REQUIRED, RHEL_ISO_RETIRED, OLD_PREVIEW_RETIRED)
RETIRED_VERSIONS_BEFORE = "2019-05-01-preview"


def accepted_early(definition: str | None, name: str, version: str) -> Feature | None:
    """The evidence that ``version`` accepted ``name`` (a field, or ``variant:TYPE``) of ``definition``."""
    low = name.lower()
    for feature in ACCEPTED_EARLY:
        if feature.definition == definition and feature.name.lower() == low and version in feature.versions:
            return feature
    return None


def accepted_variants(definition: str | None, version: str) -> list[str]:
    """The types (discriminator values) of ``definition`` that ``version`` accepted beyond its swagger."""
    return [
        f.name.split(":", 1)[1]
        for f in ACCEPTED_EARLY
        if f.definition == definition and f.name.startswith("variant:") and version in f.versions
    ]


def accepted_fields(definition: str | None, version: str) -> list[str]:
    """The fields of ``definition`` that ``version`` accepted beyond its swagger."""
    return [
        f.name
        for f in ACCEPTED_EARLY
        if f.definition == definition and not f.name.startswith("variant:") and version in f.versions
    ]
