"""One error hierarchy for edgebus.

Every error says what went wrong and what to do next. ``retriable`` tells a caller
whether the same call may succeed later without any change (a broker that is still
starting) or will fail again until something is changed (a bad config key).

The messages of :class:`InfrastructureUnavailable` ("No edge infrastructure
available: ...") and :class:`ComplianceViolation` ("Compliance violation: cannot
place data ...") are part of the public API: the spec's troubleshooting guide quotes
them.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ArtifactResolutionFailed",
    "BrokerExited",
    "ComplianceViolation",
    "ConfigError",
    "DecodeError",
    "EdgebusError",
    "InfrastructureUnavailable",
    "InvalidInput",
    "JavaMissing",
    "KafkaAuthFailed",
    "LauncherError",
    "MavenMissing",
    "PortInUse",
    "RegionFenced",
    "RegionUnavailable",
    "SessionNotCovered",
    "StalenessBoundExceeded",
    "StateOperationRefused",
    "StateOperationTimeout",
    "StoreError",
    "StoreNotEmpty",
    "StrongOutcomeUnknown",
    "StrongReadUnavailable",
    "TopicLayoutMismatch",
    "UnknownRegion",
    "UnsupportedConsistency",
    "WriteFailed",
]


class EdgebusError(Exception):
    """Root of every error edgebus raises on purpose."""

    retriable: bool = False
    #: exit code the CLI uses for this error (2: the input must change; 1: the system)
    exit_code: int = 1


class InvalidInput(EdgebusError):
    """The caller's input is wrong; nothing was written. Change the input and retry."""

    exit_code = 2


class ConfigError(InvalidInput):
    """An edge_config value or key is wrong."""


class UnknownRegion(InvalidInput):
    """A region name that the configuration does not know."""

    def __init__(self, region: str, known: Sequence[str]) -> None:
        self.region = region
        self.known = tuple(known)
        hint = _nearest(region, self.known)
        super().__init__(
            f"Unknown region {region!r}{hint}. Known regions: {', '.join(self.known)}. "
            "Add it to discovery.locations in your edge_config or pick a known one."
        )


class UnsupportedConsistency(InvalidInput):
    """A consistency level this operation cannot provide."""


class ComplianceViolation(InvalidInput):
    """Data cannot be placed in any region its classification allows.

    Raised before anything is written: a refused write changes nothing.
    """

    def __init__(
        self,
        classification: Sequence[str],
        zones_required: Sequence[str],
        regions_considered: Sequence[str],
        reason: str,
        fix: str | None = None,
        allowed: Sequence[str] = (),
    ) -> None:
        self.classification = tuple(classification)
        self.zones_required = tuple(zones_required)
        self.regions_considered = tuple(regions_considered)
        self.reason = reason
        #: the regions that could hold the data (empty when none or not known)
        self.allowed = tuple(allowed)
        #: how to fix it: the settings or options to change
        self.fix = fix or (
            "Verify that compliance.zones maps the required zones to regions you run, "
            "or write the data with a classification those regions allow."
        )
        classes = ", ".join(self.classification) or "unclassified"
        zones = ", ".join(self.zones_required) or "none"
        regions = ", ".join(self.regions_considered) or "none"
        may_hold = f" Regions that may hold it: {', '.join(self.allowed)}." if allowed else ""
        super().__init__(
            f"Compliance violation: cannot place data classified {classes}: {reason}. "
            f"Zones required: {zones}. Regions considered: {regions}.{may_hold} "
            f"To fix: {self.fix}"
        )


class DecodeError(EdgebusError):
    """A record that is not a valid edgebus event (wrong magic, unknown schema, bad body)."""


class InfrastructureUnavailable(EdgebusError):
    """No Kafka broker answered. The message starts "No edge infrastructure available"."""

    retriable = True

    def __init__(self, detail: str, addresses: Sequence[str] = ()) -> None:
        self.addresses = tuple(addresses)
        tried = f" (tried {', '.join(self.addresses)})" if self.addresses else ""
        super().__init__(
            f"No edge infrastructure available: {detail}{tried}. "
            "Start a local Kafka with `edgebus kafka up`, or point EDGEBUS_BOOTSTRAP "
            "(or kafka.bootstrap in your edge_config) at a running broker."
        )


class TopicLayoutMismatch(EdgebusError):
    """A regional topic exists with a layout edgebus cannot use (e.g. partition count)."""


class LauncherError(EdgebusError):
    """The local Kafka launcher could not do what was asked."""


class JavaMissing(LauncherError):
    """Java 17 or newer is needed to run the local Kafka broker."""


class MavenMissing(LauncherError):
    """Maven is needed to fetch the Kafka jars from Maven Central."""


class ArtifactResolutionFailed(LauncherError):
    """Maven could not resolve the Kafka artifacts."""

    retriable = True


class PortInUse(LauncherError):
    """A port the launcher was asked to use is taken."""


class BrokerExited(LauncherError):
    """A broker process exited while starting or running."""


def _nearest(word: str, candidates: Sequence[str]) -> str:
    import difflib

    match = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


class WriteFailed(EdgebusError):
    """Kafka did not acknowledge a write after the producer's retries.

    The event may or may not have been appended: retry with the same ``event_id``
    semantics in mind (consumers deduplicate by event id).
    """

    retriable = True


class StoreError(EdgebusError):
    """A store (``sqlite:///...``, ``jsonl:///...``) cannot be opened, read or written.

    The message names the URL and what to do (a bad URL is also ``exit_code`` 2).
    """


class RegionUnavailable(EdgebusError):
    """No region service answers for a region (not running, or not reachable).

    Start one with ``edgebus region run --region R`` (or embed ``RegionService``).
    """

    retriable = True


class StoreNotEmpty(StoreError):
    """A command that builds a new store was pointed at one that already holds state."""

    exit_code = 2


class RegionFenced(EdgebusError):
    """Another service for the same region took over this one's partitions."""



class SessionNotCovered(EdgebusError):
    """No region asked could serve a causal read: none has applied everything the
    session token covers yet (replication is behind, or a region is down).

    ``missing`` maps ``"region:partition"`` to the offset the token needs there.
    Retry later, raise ``reads.wait_ms``, or read with ``fallback="route"``.
    """

    retriable = True

    def __init__(self, message: str, missing: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.missing = dict(missing or {})


class StalenessBoundExceeded(EdgebusError):
    """No region asked could prove its answer within the staleness bound.

    ``staleness_ms`` is the best (smallest) staleness measured, ``None`` if unknown.
    Retry later, allow more staleness, or read with ``fallback="route"``.
    """

    retriable = True

    def __init__(
        self, message: str, staleness_ms: float | None = None, versions_behind: int | None = None
    ) -> None:
        super().__init__(message)
        self.staleness_ms = staleness_ms
        self.versions_behind = versions_behind


class StrongOutcomeUnknown(EdgebusError):
    """A strong write's decision did not reach the client in time (no coordinator
    running, or the commit log unreachable). The write may still commit or abort: the
    commit log decides. ``txn_id`` names it for ``edgebus saga show``; a strong read of
    the key tells whether it took effect.
    """

    retriable = False

    def __init__(self, message: str, txn_id: str) -> None:
        super().__init__(message)
        self.txn_id = txn_id


class StrongReadUnavailable(EdgebusError):
    """No region could serve a linearizable read in time (its participant is behind
    on the commit log, or down). Retry, or read at a weaker consistency."""

    retriable = True


class StateOperationRefused(InvalidInput):
    """A state machine's owner refused an operation (an unlock by someone who does not
    hold the lock, an increment of a field that is not a number, an update_fn that
    failed or is not registered). The state is unchanged; the message says why."""

    def __init__(self, message: str, state_id: str, req_id: str) -> None:
        super().__init__(message)
        self.state_id = state_id
        self.req_id = req_id


class StateOperationTimeout(EdgebusError):
    """No owner answered a state operation in time: no region service that may host the
    state is running, or the owner is failing over. The operation may still run once an
    owner takes the state (it waits in the state log): sending it again with the same
    ``req_id`` never runs it twice, and returns its answer."""

    retriable = True

    def __init__(self, message: str, state_id: str, req_id: str) -> None:
        super().__init__(message)
        self.state_id = state_id
        self.req_id = req_id


class StoreMismatch(EdgebusError):
    """A region's store was built from another Kafka (another cluster, a recreated
    topic, another partition count) and the service was told not to rebuild it
    (``--on-store-mismatch refuse``). The message says what differs and what to do."""

    exit_code = 3


class KafkaAuthFailed(InfrastructureUnavailable):
    """A Kafka cluster refused edgebus's TLS handshake or SASL authentication (a
    certificate that does not verify, a host name the certificate does not name, a
    wrong password, an unknown user, a mechanism the broker does not enable).

    An :class:`InfrastructureUnavailable` (the cluster cannot be used), but not
    retriable: the same settings fail again. ``check`` says what to look at; the
    message never holds a secret.
    """

    retriable = False
    exit_code = 2

    def __init__(self, detail: str, check: str, addresses: Sequence[str] = ()) -> None:
        self.addresses = tuple(addresses)
        self.check = check
        tried = f" (tried {', '.join(self.addresses)})" if self.addresses else ""
        EdgebusError.__init__(
            self,
            f"No edge infrastructure available: {detail}{tried}. Check {check}.",
        )
