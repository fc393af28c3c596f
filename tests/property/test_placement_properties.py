"""Properties of placement and classification over generated configs and requests."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.core.classification import classify
from edgebus.core.placement import (
    STRATEGIES,
    ComplianceRules,
    Placement,
    PlacementRequest,
    place,
)
from edgebus.errors import (
    ComplianceViolation,
    InfrastructureUnavailable,
    InvalidInput,
    UnknownRegion,
)

REGION_POOL = [f"r{i}" for i in range(6)]
ZONE_POOL = [f"z{i}" for i in range(4)]
CLASS_POOL = ["c0", "c1", "c2", "c3", "public"]

# some names are not regions of the config at all ("x9"): they must be ignored
names_st = st.lists(st.sampled_from([*REGION_POOL, "x9"]), max_size=4)


@st.composite
def rules_st(draw: st.DrawFn) -> ComplianceRules:
    zones = draw(
        st.dictionaries(
            st.sampled_from(ZONE_POOL),
            st.lists(st.sampled_from(REGION_POOL), unique=True, min_size=1, max_size=6),
            max_size=4,
        )
    )
    # "z9" is required by some classes but never defined: it has no regions
    classifications = draw(
        st.dictionaries(
            st.sampled_from(CLASS_POOL[:-1]),
            st.lists(st.sampled_from([*ZONE_POOL, *ZONE_POOL, "z9"]), unique=True, max_size=2),
            max_size=4,
        )
    )
    return ComplianceRules.from_mappings(
        zones,
        classifications,
        strict_mode=draw(st.booleans()),
        default_classification=draw(st.sampled_from(CLASS_POOL)),
    )


@st.composite
def request_kwargs_st(draw: st.DrawFn) -> dict[str, Any]:
    regions = tuple(draw(st.lists(st.sampled_from(REGION_POOL), unique=True, min_size=1)))
    return {
        "regions": regions,
        "classes": frozenset(draw(st.lists(st.sampled_from(CLASS_POOL), max_size=3))),
        # mostly a configured region; sometimes none; sometimes one nobody configured
        "home": draw(st.none() | st.sampled_from(regions) | st.sampled_from(REGION_POOL)),
        "preferred": tuple(draw(names_st)),
        "excluded": tuple(draw(names_st)),
        "compliance_zones": tuple(draw(st.lists(st.sampled_from([*ZONE_POOL, "z9"]), max_size=1))),
        "replication_factor": draw(
            st.none() | st.integers(min_value=1, max_value=7) | st.sampled_from([0, -1])
        ),
        "strategy": draw(st.sampled_from(STRATEGIES)),
        "latencies_ms": draw(
            st.dictionaries(
                st.sampled_from(REGION_POOL),
                st.floats(min_value=0, max_value=500) | st.just(float("nan")),
                max_size=6,
            )
        ),
        "unhealthy": frozenset(draw(names_st)),
        "key": draw(st.text(max_size=8)),
    }


def zones_for(rules: ComplianceRules, request: PlacementRequest) -> set[str]:
    """The required zones, computed independently of ComplianceRules' own helpers."""
    classes = request.classes or {rules.default_classification}
    required = set(request.compliance_zones)
    for cls in classes:
        required.update(rules.data_classifications.get(cls, ()))
    return required


def try_place(
    rules: ComplianceRules, kwargs: dict[str, Any]
) -> tuple[PlacementRequest | None, Placement | Exception]:
    try:
        request = PlacementRequest(**kwargs)
    except InvalidInput as e:
        return None, e
    try:
        return request, place(rules, request)
    except (ComplianceViolation, InfrastructureUnavailable, UnknownRegion, InvalidInput) as e:
        return request, e


@settings(max_examples=400, deadline=None)
@given(rules_st(), request_kwargs_st())
def test_placement_is_compliant_or_refused_never_in_between(
    rules: ComplianceRules, kwargs: dict[str, Any]
) -> None:
    request, outcome = try_place(rules, kwargs)
    if isinstance(outcome, Exception):
        rf = kwargs["replication_factor"]
        if request is None:
            assert rf is not None and rf < 1
        if isinstance(outcome, UnknownRegion):
            assert kwargs["home"] not in kwargs["regions"]
        return
    assert request is not None
    placement = outcome
    required = zones_for(rules, request)
    known = set(request.regions)
    for region in placement.regions:
        assert region in known
        for zone in required:
            assert region in rules.zones.get(zone, ()), (region, zone)
        assert region not in request.excluded
        assert region not in request.unhealthy
    assert placement.regions, "a placement has at least its home"
    assert len(set(placement.regions)) == len(placement.regions)
    assert placement.regions[0] == placement.home
    assert set(placement.regions) <= set(placement.allowed)
    if request.replication_factor is not None:
        assert len(placement.regions) <= request.replication_factor
    assert set(placement.zones_required) == required
    assert set(placement.degraded) <= set(placement.allowed) & request.unhealthy
    assert not set(placement.degraded) & (set(placement.regions) | set(request.excluded))
    if rules.strict_mode:
        assert placement.rerouted is False
        if request.home is not None:
            assert placement.home == request.home
    else:
        assert placement.rerouted == (request.home is not None and request.home != placement.home)


@settings(deadline=None)
@given(rules_st(), request_kwargs_st())
def test_strict_mode_never_reroutes(rules: ComplianceRules, kwargs: dict[str, Any]) -> None:
    strict = ComplianceRules(
        rules.zones, rules.data_classifications, True, rules.default_classification
    )
    _, outcome = try_place(strict, kwargs)
    if isinstance(outcome, Placement):
        assert outcome.rerouted is False
        assert kwargs["home"] is None or outcome.home == kwargs["home"]


@settings(deadline=None)
@given(rules_st(), request_kwargs_st())
def test_placement_is_deterministic(rules: ComplianceRules, kwargs: dict[str, Any]) -> None:
    _, first = try_place(rules, kwargs)
    rebuilt = ComplianceRules.from_mappings(
        {z: list(r) for z, r in rules.zones.items()},
        {c: list(z) for c, z in rules.data_classifications.items()},
        strict_mode=rules.strict_mode,
        default_classification=rules.default_classification,
    )
    _, second = try_place(rebuilt, dict(kwargs))
    if isinstance(first, Exception):
        assert type(second) is type(first)
        assert str(second) == str(first)
    else:
        assert second == first


@settings(deadline=None)
@given(rules_st(), request_kwargs_st())
def test_allowed_regions_do_not_depend_on_preferences_health_or_strategy(
    rules: ComplianceRules, kwargs: dict[str, Any]
) -> None:
    _, outcome = try_place(rules, kwargs)
    if isinstance(outcome, Placement):
        expected = rules.allowed_regions(
            kwargs["regions"], outcome.classes, kwargs["compliance_zones"]
        )
        assert outcome.allowed == expected


@st.composite
def fallback_kwargs_st(draw: st.DrawFn) -> dict[str, Any]:
    kwargs = draw(request_kwargs_st())
    kwargs["fallback"] = "any_available"
    # mostly valid bounds, so most examples reach placement; sometimes a bad one
    rf = draw(st.sampled_from([None, None, 1, 2, 3, 5, 0]))
    kwargs["replication_factor"] = rf
    ceiling = 4 if rf is None or rf < 1 else rf
    kwargs["min_replicas"] = draw(
        st.sampled_from([None, None, 0, ceiling + 1]) | st.integers(1, ceiling)
    )
    # lean on health: more unhealthy regions than the base strategy draws
    kwargs["unhealthy"] = frozenset(draw(st.lists(st.sampled_from(REGION_POOL), max_size=6)))
    return kwargs


@settings(max_examples=400, deadline=None)
@given(rules_st(), fallback_kwargs_st())
def test_fallback_stays_compliant_and_healthy_and_refuses_only_for_a_reason(
    rules: ComplianceRules, kwargs: dict[str, Any]
) -> None:
    request, outcome = try_place(rules, kwargs)
    rf, floor = kwargs["replication_factor"], kwargs["min_replicas"]
    if request is None:
        assert (rf is not None and rf < 1) or (
            floor is not None and (floor < 1 or (rf is not None and floor > rf))
        )
        return
    # the oracle: which regions could take the write, computed independently
    required = zones_for(rules, request)
    allowed = [r for r in request.regions if all(r in rules.zones.get(z, ()) for z in required)]
    compliant = [r for r in allowed if r not in request.excluded]
    healthy = [r for r in compliant if r not in request.unhealthy]
    home = request.home
    if isinstance(outcome, UnknownRegion):
        assert home not in request.regions
        return
    if isinstance(outcome, ComplianceViolation):
        # compliance, exclusions or an impossible floor; never health
        assert (
            not compliant
            or (rules.strict_mode and home is not None and home not in compliant)
            or (floor is not None and len(compliant) < floor)
        )
        return
    if isinstance(outcome, InfrastructureUnavailable):
        assert not healthy or (floor is not None and len(healthy) < floor)
        return
    assert isinstance(outcome, Placement), outcome
    placement = outcome
    assert placement.regions
    assert set(placement.regions) <= set(healthy)
    assert placement.home == placement.regions[0]
    if floor is not None:
        assert len(placement.regions) >= floor
    if rf is not None:
        assert len(placement.regions) <= rf
    assert placement.rerouted == (home is not None and placement.home != home)
    if home in healthy:
        assert placement.home == home
    assert set(placement.degraded) <= set(compliant) - set(healthy)
    if rf is None:
        assert set(placement.degraded) == set(compliant) - set(healthy)


# ------------------------------------------------------------------ classification

SENSITIVE = st.sampled_from(
    [
        ("email", "user@example.com"),
        ("patient_name", "Ann"),
        ("diagnosis", "flu"),
        ("iban", "GB82WEST12345698765432"),
        ("note", "4111 1111 1111 1111"),
        ("ref", "123-45-6789"),
        ("phone", "+442079460958"),
        ("salary", 100),
        ("contact", {"first_name": "Ann"}),
        ("count", 3),
        ("tags", ["a", "b"]),
    ]
)
UNRELATED = st.sampled_from(
    [
        ("filename", "report.pdf"),
        ("hostname", "web-1.internal"),
        ("healthcheck", "ok"),
        ("health_status", "green"),
        ("product_name", "Widget"),
        ("created_at", "2024-05-01T10:00:00Z"),
        ("request_id", "8f14e45f-ceea-467a-9575-6f0b2d3b1a2c"),
        ("version", "1.22.333"),
        ("retries", 3),
        ("meta", {"service_name": "api", "node": "n1"}),
        ("items", [{"sku": "A-1", "qty": 2}]),
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(SENSITIVE, max_size=5), st.lists(UNRELATED, min_size=1, max_size=5))
def test_adding_unrelated_fields_never_removes_a_class(
    base_fields: list[tuple[str, object]], extra_fields: list[tuple[str, object]]
) -> None:
    base = dict(base_fields)
    merged = {**base, **{f"x_{k}": v for k, v in extra_fields}}
    before = classify(base).classes
    after = classify(merged).classes
    assert before - {"public"} <= after
    # unrelated fields add nothing either
    assert after == before


json_st = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_st)
def test_classify_accepts_any_json_like_record_deterministically(data: object) -> None:
    first = classify(data)
    assert first == classify(data)
    assert first.classes
    assert "pii" not in first.classes or "phi" not in first.classes
    assert all(f.cls in first.classes or f.cls == "pii" for f in first.findings)


@settings(max_examples=300, deadline=None)
@given(
    rules_st(),
    request_kwargs_st(),
    st.integers(min_value=1, max_value=4),
    st.booleans(),
)
def test_min_regions_is_met_refused_in_strict_mode_or_reported_short(
    rules: ComplianceRules, kwargs: dict[str, Any], floor: int, single_region: bool
) -> None:
    """``replication.min_regions``: a placement reaches the floor; falls short only in
    non-strict mode and then says so; single_region never places in more than one."""
    if single_region:
        floor = 1
    asked = {**kwargs, "min_regions": floor, "single_region": single_region}
    _, outcome = try_place(rules, asked)
    if isinstance(outcome, Exception):
        return
    if single_region:
        assert len(outcome.regions) == 1
    if len(outcome.regions) >= floor:
        assert outcome.shortfall == ""
    else:
        assert not rules.strict_mode, (outcome, floor)
        assert "replication.min_regions" in outcome.shortfall
    # the floor never widens where data may go
    assert set(outcome.regions) <= set(outcome.allowed)
