"""The ``replication`` section as placement reads it: how many regions a write must
reach (``min_regions``) and whether it may reach more than one (``strategy``).

``single_region`` makes one region the default and the ceiling: a write asking for a
``replication_factor`` above 1 is refused, saying which setting to change.
``min_regions`` is the configured floor of a placement. A placement with fewer regions
than the floor is refused in strict mode (``compliance.strict_mode``), with the cause and
the setting to change; in non-strict mode it is made and says it fell short
(``Placement.shortfall``: the receipt carries it and the writer logs it). The cause
decides the error:

* compliance or ``exclude_locations`` leave too few regions even with every region
  healthy: :class:`~edgebus.errors.ComplianceViolation` (retrying cannot help);
* too few of them are healthy: the retriable
  :class:`~edgebus.errors.InfrastructureUnavailable`;
* the write's own ``replication_factor`` is below the floor:
  :class:`~edgebus.errors.InvalidInput`.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgebus.errors import ComplianceViolation, InfrastructureUnavailable, InvalidInput

__all__ = ["capped_factor", "shortfall"]


def capped_factor(requested: int | None, single_region: bool) -> int | None:
    """The replication factor a write uses: ``requested``, or 1 under ``single_region``
    (where a request above 1 is refused)."""
    if not single_region:
        return requested
    if requested is not None and requested > 1:
        raise InvalidInput(
            f"replication_factor {requested} asks for {requested} regions, but "
            "replication.strategy is single_region: every write stays in one region. "
            'Drop replication_factor, or set replication.strategy to "multi_region".'
        )
    return 1


def shortfall(
    *,
    floor: int,
    strict: bool,
    placed: Sequence[str],
    classes: Sequence[str],
    required: Sequence[str],
    allowed: Sequence[str],
    compliant: Sequence[str],
    healthy: Sequence[str],
    factor: int | None,
    regions: Sequence[str],
) -> str:
    """Why ``placed`` holds fewer regions than ``floor`` (``replication.min_regions``),
    or ``""`` when it does not. Strict: raise instead (see the module docstring)."""
    if len(placed) >= floor:
        return ""
    where = f"placed in {len(placed)} region(s) ({', '.join(placed)})"
    if len(compliant) < floor:
        names = ", ".join(sorted(classes)) or "unclassified"
        if len(allowed) < floor:
            cause = (
                f"only {len(allowed)} region(s) may hold data classified {names} "
                f"({', '.join(allowed) or 'none'})"
            )
        else:
            cause = (
                f"exclude_locations leaves {len(compliant)} of the regions that may hold "
                f"data classified {names} ({', '.join(compliant)})"
            )
        fix = (
            f"lower replication.min_regions to {len(compliant)}, add regions to the "
            f"required zones ({', '.join(required) or 'none'}) in compliance.zones, or set "
            "compliance.strict_mode false to write with fewer regions (the receipt says so)"
        )
        if strict:
            raise ComplianceViolation(
                tuple(sorted(classes)),
                tuple(required),
                tuple(regions),
                f"replication.min_regions is {floor}, but {cause}",
                f"{fix}.",
                tuple(allowed),
            )
    elif len(healthy) < floor:
        down = [r for r in compliant if r not in healthy]
        cause = (
            f"only {len(healthy)} of the regions that may hold it are healthy "
            f"({', '.join(healthy)}; unhealthy: {', '.join(down)})"
        )
        if strict:
            raise InfrastructureUnavailable(
                f"replication.min_regions is {floor}, but {cause}; retry when they "
                "recover, or set compliance.strict_mode false to write with fewer regions"
            )
    else:
        cause = f"the write's replication_factor is {factor}"
        if strict:
            raise InvalidInput(
                f"replication_factor {factor} is below replication.min_regions ({floor}): "
                f"raise replication_factor to at least {floor} or leave it unset, or lower "
                "replication.min_regions."
            )
    return f"{where}, below replication.min_regions {floor}: {cause}"
