"""Where data may live and where a write goes: compliance rules and placement.

Data classes (``pii``, ``phi``, ``financial`` ...) require compliance zones
(``gdpr``, ``hipaa``, ``sox`` ...); a zone is a set of regions. A region is *allowed*
for a write when it lies in **every** zone the write's classes (and the caller's
``compliance_zones``) require. Placement then narrows the allowed regions by the
caller's exclusions and region health, ranks them (preferred locations first, then
the edge strategy), picks the home region and truncates to the replication factor.

Invariant (DESIGN.md, "Compliance and placement"): whatever the mode, data is never
placed outside its allowed regions. ``strict_mode`` only decides what happens when the
requested home region is not usable for compliance reasons: strict refuses with
:class:`~edgebus.errors.ComplianceViolation`, non-strict reroutes the write to the
best-ranked compliant region and says so (``Placement.rerouted``).
``fallback="any_available"`` lets a write whose home is *unhealthy* move to another
healthy compliant region even in strict mode; it never widens the allowed regions.

Decisions:

* A zone named by ``data_classifications`` or ``compliance_zones`` but missing from
  ``zones`` has no regions, so nothing is allowed (refused, never ignored).
* A class without an entry in ``data_classifications`` (``public``) requires nothing.
  An empty ``classes`` set means unclassified and uses ``default_classification``.
* Names in ``preferred``/``excluded``/``unhealthy`` that are not known regions are
  ignored: they may be regions not discovered yet.
* Strict mode and a compliant home that is unhealthy: refused with the retriable
  :class:`~edgebus.errors.InfrastructureUnavailable` unless the request asks for
  ``fallback="any_available"``; then the write goes to the best-ranked healthy
  compliant region (``rerouted=True``). Strict mode is about compliance, and another
  compliant region keeps it. Fallback never overrides compliance: a non-compliant or
  excluded home is still a :class:`~edgebus.errors.ComplianceViolation`, and when no
  compliant region is healthy the write is refused, never sent outside the zones.
* ``min_replicas`` is a floor, ``replication_factor`` a ceiling: fewer healthy
  compliant, not-excluded regions than ``min_replicas`` is refused rather than
  written with less redundancy than asked for. When health is the cause it is the
  retriable InfrastructureUnavailable (regions recover); when compliance and
  ``excluded`` leave too few regions even if all were healthy, retrying cannot help,
  so it is a ComplianceViolation.
* ``Placement.degraded`` lists the compliant, not-excluded regions the placement would
  have used had every region been healthy (same ranking, same home rule, same
  replication factor) and that were skipped because unhealthy, in that rank order. A
  region outside the replication factor anyway is not degraded: nothing was lost.
* ``min_regions`` (``replication.min_regions``) is the configured floor and
  ``single_region`` (``replication.strategy``) the configured ceiling of one region:
  :mod:`edgebus.core.region_floor` says what falling short does in each mode.
* ``balanced`` rotates the *allowed* regions (a set fixed by compliance and config)
  by ``crc32(key) % len(allowed)`` and then drops excluded and unhealthy regions, so a
  region that goes down moves only its own keys to the next region in the ring.

Pure: no I/O, no clock; the same inputs always give the same placement.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, TypeVar, get_args

from edgebus.core.region_floor import capped_factor, shortfall
from edgebus.errors import (
    ComplianceViolation,
    ConfigError,
    InfrastructureUnavailable,
    InvalidInput,
    UnknownRegion,
)

__all__ = [
    "DEFAULT_DATA_CLASSIFICATIONS",
    "DEFAULT_REGIONS",
    "DEFAULT_ZONES",
    "FALLBACKS",
    "STRATEGIES",
    "ComplianceRules",
    "Fallback",
    "FrozenMap",
    "Placement",
    "PlacementRequest",
    "Strategy",
    "place",
]

DEFAULT_REGIONS: tuple[str, ...] = ("us-east-1", "eu-west-1", "ap-south-1")
DEFAULT_ZONES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "gdpr": ("eu-west-1", "eu-central-1"),
        "hipaa": ("us-east-1", "us-west-2"),
        "sox": ("us-east-1", "eu-west-1"),
    }
)
DEFAULT_DATA_CLASSIFICATIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"pii": ("gdpr",), "phi": ("hipaa",), "financial": ("sox",)}
)

Strategy = Literal["lowest_latency", "balanced", "compliance_first"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)

#: What a write does when its home region is unhealthy: ``none`` keeps today's rule
#: (strict refuses, non-strict reroutes); ``any_available`` reroutes in strict mode too,
#: to a healthy region of the same compliance zones.
Fallback = Literal["none", "any_available"]
FALLBACKS: tuple[Fallback, ...] = get_args(Fallback)

_V = TypeVar("_V")


class FrozenMap(Mapping[str, _V]):
    """A read-only, hashable mapping (equal and hashed by its items, not their order)."""

    __slots__ = ("_data", "_hash")

    def __init__(self, items: Mapping[str, _V] | Iterable[tuple[str, _V]] = ()) -> None:
        self._data: dict[str, _V] = dict(items)
        self._hash: int | None = None

    def __getitem__(self, key: str) -> _V:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenMap):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


def _names(value: object, what: str) -> tuple[str, ...]:
    """A tuple of unique strings from a config list; a bare string is a mistake."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigError(
            f'{what} must be a list of names, got {value!r}. Write it as a list, e.g. ["{value}"].'
        )
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{what} must hold non-empty strings, got {item!r}.")
        if item not in out:
            out.append(item)
    return tuple(out)


def _table(value: Mapping[str, object], what: str, lower_keys: bool) -> FrozenMap[tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be a mapping of name to list, got {value!r}.")
    items: dict[str, tuple[str, ...]] = {}
    for key, names in value.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{what} keys must be non-empty strings, got {key!r}.")
        name = key.lower() if lower_keys else key
        items[name] = _names(names, f"{what}[{key!r}]")
    return FrozenMap(items)


@dataclass(frozen=True)
class ComplianceRules:
    """Which zones each data class requires and which regions each zone holds.

    ``zones`` maps a zone to its regions; ``data_classifications`` maps a class
    (lower-cased) to the zones it requires (all of them). Both are stored as
    :class:`FrozenMap`, so rules are hashable and can key a cache.
    """

    zones: Mapping[str, tuple[str, ...]]
    data_classifications: Mapping[str, tuple[str, ...]]
    strict_mode: bool = True
    default_classification: str = "public"

    def __post_init__(self) -> None:
        object.__setattr__(self, "zones", _table(self.zones, "compliance.zones", False))
        object.__setattr__(
            self,
            "data_classifications",
            _table(self.data_classifications, "compliance.data_classifications", True),
        )
        object.__setattr__(self, "strict_mode", bool(self.strict_mode))
        default = self.default_classification
        if not isinstance(default, str) or not default.strip():
            raise ConfigError(
                f"compliance.default_classification must be a class name, got {default!r}."
            )
        object.__setattr__(self, "default_classification", default.strip().lower())

    @classmethod
    def from_mappings(
        cls,
        zones: Mapping[str, Iterable[str]] | None = None,
        data_classifications: Mapping[str, Iterable[str]] | None = None,
        *,
        strict_mode: bool = True,
        default_classification: str = "public",
    ) -> ComplianceRules:
        """Build rules from plain config mappings (lists welcome); ``None`` = defaults."""
        return cls(
            zones=_table(DEFAULT_ZONES if zones is None else zones, "compliance.zones", False),
            data_classifications=_table(
                DEFAULT_DATA_CLASSIFICATIONS
                if data_classifications is None
                else data_classifications,
                "compliance.data_classifications",
                True,
            ),
            strict_mode=strict_mode,
            default_classification=default_classification,
        )

    def _classes(self, classes: Iterable[str]) -> frozenset[str]:
        found = frozenset(c.lower() for c in _as_names(classes))
        return found or frozenset({self.default_classification})

    def zones_required(
        self, classes: Iterable[str], extra_zones: Iterable[str] = ()
    ) -> tuple[str, ...]:
        """Sorted union of the zones the classes require and ``extra_zones``.

        An empty ``classes`` means unclassified: ``default_classification`` applies.
        """
        required = set(_as_names(extra_zones))
        for cls in self._classes(classes):
            required.update(self.data_classifications.get(cls, ()))
        return tuple(sorted(required))

    def allowed_regions(
        self, regions: Sequence[str], classes: Iterable[str], extra_zones: Iterable[str] = ()
    ) -> tuple[str, ...]:
        """The regions (in ``regions`` order) that lie in every required zone."""
        required = self.zones_required(classes, extra_zones)
        zone_sets = [frozenset(self.zones.get(z, ())) for z in required]
        out: list[str] = []
        for region in regions:
            if region not in out and all(region in zs for zs in zone_sets):
                out.append(region)
        return tuple(out)


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    """``values`` as a tuple, first occurrence kept."""
    if type(values) is tuple and len(set(values)) == len(values):
        return values
    return tuple(dict.fromkeys(values))


def _as_names(names: Iterable[str]) -> Iterable[str]:
    """One name passed where a collection was expected means that one name."""
    return (names,) if isinstance(names, str) else names


def _finite_latency(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"latencies_ms values must be numbers, got {value!r}.")
    number = float(value)
    return math.inf if math.isnan(number) else number


@dataclass(frozen=True)
class PlacementRequest:
    """What a write asks for. Lists are accepted and stored as tuples."""

    regions: tuple[str, ...]
    classes: frozenset[str]
    home: str | None = None
    preferred: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    compliance_zones: tuple[str, ...] = ()
    replication_factor: int | None = None
    strategy: Strategy = "compliance_first"
    latencies_ms: Mapping[str, float] = field(default_factory=FrozenMap)
    unhealthy: frozenset[str] = frozenset()
    key: str = ""
    fallback: Fallback = "none"
    min_replicas: int | None = None
    #: ``replication.min_regions``: the configured floor (see :mod:`region_floor`)
    min_regions: int = 1
    #: ``replication.strategy`` is ``single_region``: one region, the default and ceiling
    single_region: bool = False

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        if isinstance(self.regions, str):
            raise InvalidInput(f"regions must be a list of region names, got {self.regions!r}.")
        setattr_(self, "regions", _unique(self.regions))
        setattr_(self, "classes", frozenset(map(str.lower, _as_names(self.classes))))
        for name in ("preferred", "excluded", "compliance_zones"):
            value = getattr(self, name)
            if value:
                setattr_(self, name, _unique(_as_names(value)))
            elif type(value) is not tuple:
                setattr_(self, name, ())
        unhealthy = self.unhealthy
        if type(unhealthy) is not frozenset:
            setattr_(self, "unhealthy", frozenset(_as_names(unhealthy)))
        latencies = self.latencies_ms
        if latencies or type(latencies) is not FrozenMap:
            setattr_(
                self,
                "latencies_ms",
                FrozenMap({r: _finite_latency(v) for r, v in latencies.items()}),
            )
        rf = self.replication_factor
        if rf is not None and (isinstance(rf, bool) or not isinstance(rf, int) or rf < 1):
            raise InvalidInput(
                f"replication_factor must be a whole number of at least 1, got {rf!r}. "
                "Use 1 for a single region, or leave it unset to use every allowed region."
            )
        setattr_(self, "replication_factor", capped_factor(rf, self.single_region))
        rf = self.replication_factor
        floor_ = self.min_regions
        if isinstance(floor_, bool) or not isinstance(floor_, int) or floor_ < 1:
            raise InvalidInput(f"min_regions must be a whole number of at least 1, got {floor_!r}.")
        if self.strategy not in STRATEGIES:
            raise InvalidInput(
                f"edge_strategy {self.strategy!r} is not one of {', '.join(STRATEGIES)}."
            )
        if not isinstance(self.key, str):
            raise InvalidInput(f"key must be a string, got {self.key!r}.")
        if self.fallback not in FALLBACKS:
            raise InvalidInput(f"fallback {self.fallback!r} is not one of {', '.join(FALLBACKS)}.")
        floor = self.min_replicas
        if floor is not None:
            if isinstance(floor, bool) or not isinstance(floor, int) or floor < 1:
                raise InvalidInput(
                    f"min_replicas must be a whole number of at least 1, got {floor!r}. "
                    "Leave it unset to accept whatever healthy regions remain."
                )
            if rf is not None and floor > rf:
                raise InvalidInput(
                    f"min_replicas ({floor}) is larger than replication_factor ({rf}): "
                    "no placement could satisfy both. Raise replication_factor or lower "
                    "min_replicas."
                )


@dataclass(frozen=True)
class Placement:
    """Where a write goes: ``home`` first, then replicas in rank order."""

    home: str
    regions: tuple[str, ...]
    classes: frozenset[str]
    zones_required: tuple[str, ...]
    allowed: tuple[str, ...]
    rerouted: bool
    #: compliant, not-excluded regions dropped because unhealthy (see module docstring)
    degraded: tuple[str, ...] = ()
    #: why the placement holds fewer regions than ``replication.min_regions`` (non-strict
    #: mode; strict refuses), else ``""``
    shortfall: str = ""

    @property
    def replicas(self) -> tuple[str, ...]:
        """The regions other than home, in rank order."""
        return self.regions[1:]


@functools.lru_cache(maxsize=1024)
def _compliance(
    rules: ComplianceRules,
    regions: tuple[str, ...],
    classes: frozenset[str],
    extra_zones: tuple[str, ...],
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(zones required, allowed regions), cached: the same few combinations recur."""
    return (
        rules.zones_required(classes, extra_zones),
        rules.allowed_regions(regions, classes, extra_zones),
    )


def _rank(request: PlacementRequest, allowed: tuple[str, ...], candidates: list[str]) -> list[str]:
    usable = set(candidates)
    ranked = [r for r in request.preferred if r in usable]
    taken = set(ranked)
    if request.strategy == "lowest_latency":
        order = {r: i for i, r in enumerate(candidates)}
        rest = sorted(
            (r for r in candidates if r not in taken),
            key=lambda r: (request.latencies_ms.get(r, math.inf), order[r]),
        )
    elif request.strategy == "balanced":
        shift = zlib.crc32(request.key.encode("utf-8")) % len(allowed)
        ring = allowed[shift:] + allowed[:shift]
        rest = [r for r in ring if r in usable and r not in taken]
    else:
        rest = [r for r in candidates if r not in taken]
    return ranked + rest


def place(rules: ComplianceRules, request: PlacementRequest) -> Placement:
    """Decide where a write goes, or raise why it cannot go anywhere.

    Raises :class:`~edgebus.errors.UnknownRegion` for an unknown home,
    :class:`~edgebus.errors.ComplianceViolation` when no allowed region is left (or,
    in strict mode, when the home is not allowed or is excluded, or when fewer
    allowed, not-excluded regions than ``min_replicas`` exist at all), and
    :class:`~edgebus.errors.InfrastructureUnavailable` when every remaining allowed
    region is unhealthy, when fewer than ``min_replicas`` healthy ones remain, or, in
    strict mode without ``fallback="any_available"``, when the home is unhealthy.

    The steps narrow the regions in turn: allowed by compliance, not excluded
    (:func:`_compliant`), healthy (:func:`_healthy`); then rank and order them.
    """
    regions = request.regions
    home = request.home
    if home is not None and home not in regions:
        raise UnknownRegion(home, regions)
    classes = request.classes or frozenset({rules.default_classification})
    required, allowed = _compliance(rules, regions, classes, request.compliance_zones)
    compliant = _compliant(rules, request, classes, required, allowed)
    candidates = _healthy(rules, request, required, compliant)
    ordered = _ordered(request, home, _rank(request, allowed, candidates))
    short = ""
    if len(ordered) < request.min_regions:
        short = shortfall(
            floor=request.min_regions,
            strict=rules.strict_mode,
            placed=ordered,
            classes=tuple(classes),
            required=required,
            allowed=allowed,
            compliant=compliant,
            healthy=candidates,
            factor=request.replication_factor,
            regions=regions,
        )
    return Placement(
        home=ordered[0],
        regions=ordered,
        classes=frozenset(classes),
        zones_required=required,
        allowed=allowed,
        rerouted=home is not None and ordered[0] != home,
        degraded=(
            _degraded(request, allowed, compliant) if len(candidates) < len(compliant) else ()
        ),
        shortfall=short,
    )


def _compliant(
    rules: ComplianceRules,
    request: PlacementRequest,
    classes: frozenset[str],
    required: tuple[str, ...],
    allowed: tuple[str, ...],
) -> list[str]:
    """The allowed regions the request does not exclude. ComplianceViolation when
    none is allowed or none is left, when (strict) the home is not allowed or is
    excluded, or when fewer than ``min_replicas`` are left even with every region
    healthy."""
    home = request.home

    names = tuple(sorted(classes))

    def violation(reason: str, fix: str | None = None) -> ComplianceViolation:
        return ComplianceViolation(names, required, request.regions, reason, fix, allowed)

    if not allowed:
        raise violation(_why_none_allowed(rules, required))
    if rules.strict_mode and home is not None and home not in allowed:
        raise violation(
            f"the requested location {home!r} is not in the zones required "
            f"(allowed regions: {', '.join(allowed)}); strict_mode refuses to reroute",
            f"write it with location_id one of {', '.join(allowed)}; or set "
            "compliance.strict_mode false to let edgebus reroute it there; or, if the data "
            f"is not {', '.join(names)}, classify it so (data_classification, or "
            "compliance.default_classification for unlabelled data).",
        )
    excluded = set(request.excluded)
    compliant = [r for r in allowed if r not in excluded]
    if not compliant:
        raise violation(
            f"exclude_locations removed every compliant region ({', '.join(allowed)})",
            f"remove at least one of {', '.join(allowed)} from exclude_locations.",
        )
    if rules.strict_mode and home is not None and home in excluded:
        raise violation(
            f"the requested location {home!r} is excluded by exclude_locations; "
            "strict_mode refuses to reroute",
            f"drop {home!r} from exclude_locations or from location_id.",
        )
    floor = request.min_replicas
    if floor is not None and len(compliant) < floor:
        raise violation(
            f"only {len(compliant)} compliant region(s) not excluded ({', '.join(compliant)}) "
            f"for min_replicas {floor}, even with every region healthy",
            f"lower min_replicas to {len(compliant)}, or allow more regions (fewer "
            "exclude_locations, more regions in the required zones of compliance.zones).",
        )
    return compliant


def _why_none_allowed(rules: ComplianceRules, required: tuple[str, ...]) -> str:
    """Why no configured region lies in every required zone."""
    undefined = [z for z in required if not rules.zones.get(z)]
    if undefined:
        return f"required zone(s) {', '.join(undefined)} have no regions in compliance.zones"
    detail = "; ".join(f"{z}: {', '.join(rules.zones[z])}" for z in required)
    return f"no configured region lies in every required zone ({detail})"


def _healthy(
    rules: ComplianceRules,
    request: PlacementRequest,
    required: tuple[str, ...],
    compliant: list[str],
) -> list[str]:
    """The compliant regions that are healthy (the candidates); refuse, retriably, when
    none is, when fewer than ``min_replicas`` are, or when (strict, no fallback) the
    home is not among them."""
    home = request.home
    unhealthy = request.unhealthy
    candidates = [r for r in compliant if r not in unhealthy]
    if not candidates:
        detail = f"every compliant region is unhealthy ({', '.join(compliant)})"
        if required:
            detail += (
                f"; no compliant region is healthy (zones required: {', '.join(required)}) "
                "and a write never leaves its zones, whatever the fallback"
            )
        raise InfrastructureUnavailable(detail)
    floor = request.min_replicas
    if floor is not None and len(candidates) < floor:
        down = [r for r in compliant if r in unhealthy]
        raise InfrastructureUnavailable(
            f"only {len(candidates)} healthy compliant region(s) ({', '.join(candidates)}) "
            f"for min_replicas {floor} (unhealthy: {', '.join(down)}); retry when they "
            "recover or lower min_replicas"
        )
    if (
        rules.strict_mode
        and home is not None
        and home not in candidates
        and request.fallback != "any_available"
    ):
        raise InfrastructureUnavailable(
            f"the requested location {home!r} is unhealthy and strict_mode refuses to "
            f"reroute (healthy compliant regions: {', '.join(candidates)}); "
            'fallback="any_available" would move it to one of them'
        )
    return candidates


def _degraded(
    request: PlacementRequest, allowed: tuple[str, ...], compliant: list[str]
) -> tuple[str, ...]:
    """The regions the placement would have used had every region been healthy, and
    that were skipped because unhealthy, in rank order (see the module docstring)."""
    ideal = _ordered(request, request.home, _rank(request, allowed, compliant))
    return tuple(r for r in ideal if r in request.unhealthy)


def _ordered(request: PlacementRequest, home: str | None, ranked: list[str]) -> tuple[str, ...]:
    """Home (when among ``ranked``, else the best-ranked region) first, then the rest of
    ``ranked``, truncated to the replication factor."""
    chosen = home if home is not None and home in ranked else ranked[0]
    if chosen == ranked[0]:  # ranked holds each region once
        ordered = tuple(ranked)
    else:
        ordered = (chosen, *[r for r in ranked if r != chosen])
    if request.replication_factor is not None:
        ordered = ordered[: request.replication_factor]
    return ordered
