"""The ``compliance`` section: zones, the zones each data class requires, strict mode,
and the classifier's limits; :meth:`ComplianceConfig.rules` is its pure-core view."""

from __future__ import annotations

import functools

from pydantic import Field, model_validator

from edgebus.config.section import Section
from edgebus.core.placement import (
    DEFAULT_DATA_CLASSIFICATIONS,
    DEFAULT_ZONES,
    ComplianceRules,
)

__all__ = ["ComplianceConfig"]


class ComplianceConfig(Section):
    """Zones (zone -> regions) and which zones each data class requires."""

    strict_mode: bool = True
    zones: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: {k: tuple(v) for k, v in DEFAULT_ZONES.items()}
    )
    data_classifications: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: {k: tuple(v) for k, v in DEFAULT_DATA_CLASSIFICATIONS.items()}
    )
    default_classification: str = "public"
    #: longest field name a write may carry (longer: refused before classification)
    max_field_name_chars: int = Field(1_024, ge=16, le=1_048_576)
    #: bytes the classifier's memo caches (field names, values) may hold together
    classifier_cache_bytes: int = Field(16 * 1024 * 1024, ge=0, le=1024 * 1024 * 1024)

    @model_validator(mode="after")
    def _zones_defined(self) -> ComplianceConfig:
        for cls, zones in self.data_classifications.items():
            unknown = [z for z in zones if z not in self.zones]
            if unknown:
                raise ValueError(
                    f"data_classifications.{cls} requires zone(s) {', '.join(unknown)} "
                    f"that compliance.zones does not define (defined: "
                    f"{', '.join(self.zones) or 'none'})"
                )
        known = {"public", *self.data_classifications}
        if self.default_classification not in known:
            raise ValueError(
                f"default_classification {self.default_classification!r} is not 'public' "
                f"nor a key of data_classifications ({', '.join(sorted(known))})"
            )
        return self

    def rules(self) -> ComplianceRules:
        """The pure-core view of these settings (built once per distinct settings)."""
        return _rules(
            tuple(self.zones.items()), tuple(self.data_classifications.items()),
            self.strict_mode, self.default_classification,
        )


@functools.lru_cache(maxsize=64)
def _rules(
    zones: tuple[tuple[str, tuple[str, ...]], ...],
    classes: tuple[tuple[str, tuple[str, ...]], ...],
    strict_mode: bool,
    default_classification: str,
) -> ComplianceRules:
    return ComplianceRules.from_mappings(
        zones=dict(zones), data_classifications=dict(classes), strict_mode=strict_mode,
        default_classification=default_classification,
    )
