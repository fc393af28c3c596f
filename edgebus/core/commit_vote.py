"""Two-phase commit of a strong write across the regions of its placement.

A strong write is one transaction (``txn_id``) on one key. Its *participants* are
the regions of the write's placement; one *coordinator* drives it:

1. ``Begin``: the coordinator records the transaction in its saga log
   (:class:`LogBegin`) and waits for the log's acknowledgement (:class:`BeginLogged`),
   so a coordinator that restarts knows every transaction it may have prepared.
2. It sends PREPARE to every participant (:class:`SendPrepare`). Each participant
   validates (compliance, the key's lock, ``expected_version``) and votes. A yes
   vote locks the key and is logged at the participant (:class:`LogPrepared`) before
   it is sent.
3. All votes yes: COMMIT; any vote no, or the deadline passing first: ABORT. The
   decision is logged (:class:`LogDecision`) and announced only once the log has
   acknowledged it (:class:`DecisionLogged`): then COMMIT or ABORT goes to every
   participant (:class:`SendDecision`) and the client gets its answer (:class:`Reply`).
4. Each participant applies (COMMIT) or drops (ABORT) the write, releases the key and
   acknowledges; when every participant has acknowledged, the transaction is done
   (:class:`LogDone`) and kept a while as history.

Delivery
--------
Every message may be lost by a crash, duplicated, delayed or reordered; every handler
is idempotent. The coordinator re-sends what a transaction waits for (its log write,
PREPARE to the regions that have not voted, the decision to the regions that have not
acknowledged) every ``retry_ms`` on :class:`Tick`. A vote after the decision, a second
vote from a region, an acknowledgement of an unknown transaction and a second
decision at a participant change nothing.

Presumed abort and recovery
---------------------------
The saga log holds three records: :class:`LogBegin`, :class:`LogDecision` and
:class:`LogDone` (outputs the shell appends as they are). :func:`recover` rebuilds the
coordinator from them: a transaction with a decision is re-announced; one with a
begin and no decision is aborted (presumed abort: no participant can have been told
to commit, since a COMMIT is sent only after it is logged); one with a done record is
history. :func:`resume` then lists the outputs that carry every transaction forward.
The first decision record of a transaction is its decision: a coordinator never logs
a second, different one. The shell must make sure an old coordinator instance can no
longer append to the log before a new one reads it (fencing, e.g. a Kafka
transactional id or an epoch), so no stray decision lands after recovery read the log.

A decision record always follows its begin record: a transaction whose deadline
passes before its begin is logged waits for :class:`BeginLogged`, then logs ABORT.

Blocking
--------
A participant that voted yes keeps the key locked until it learns the decision: it
cannot decide alone, because the others may have been told to commit. That is the
blocking of two-phase commit. It is bounded: the coordinator aborts every transaction
that is not decided by its deadline, a restarted coordinator aborts every undecided
one, and the decision is re-sent until acknowledged. A participant whose prepared
transaction is overdue (:func:`overdue`, or :func:`in_doubt` after a restart) asks the
decision log itself (:class:`QueryDecision`), so it does not depend on the coordinator
being up to learn a decision that is logged already.

Duplicate requests
------------------
A ``Begin`` for a known transaction (in flight, or done and kept in history) does not
start it again; once decided it re-sends the :class:`Reply`. A done transaction is
kept while its deadline has not passed (and among the newest ``keep_done``), and a
``Begin`` arriving after its deadline for a transaction not known is refused
(:class:`Expired`, not a decision: it may be a late duplicate of a transaction that
finished and was answered), so a late duplicate can never run a transaction twice or
contradict its answer. Participants remember finished transactions until
``finished_retention_ms`` after their deadline and refuse a PREPARE that arrives after
its deadline, for the same reason.

What the shell does
-------------------
Outputs are performed in order. The coordinator's log writes are acknowledged with
messages (:class:`BeginLogged`, :class:`DecisionLogged`); a participant's ``Log*``
output must be durable before the outputs after it are performed (the vote after its
prepared record, the acknowledgement after the write and its resolved record). A
participant's shell turns :class:`SendPrepare` into :class:`Prepare` with the key's
version in its store and whether compliance allows the data there
(:meth:`SendPrepare.to_prepare`), applies :class:`ApplyWrite` idempotently by
``txn_id`` (a crash between the write and its resolved record asks for it again), and
answers :class:`QueryDecision` from the saga log. One coordinator owns a transaction
at a time. The lock guards ``expected_version`` only against other strong writes: an
eventual write to the same key does not take it.

Pure: no I/O, no clock; ``now_ms`` is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from edgebus.errors import InvalidInput

__all__ = [
    "Ack",
    "ApplyWrite",
    "Begin",
    "BeginLogged",
    "CoordinatorConfig",
    "CoordinatorLogRecord",
    "CoordinatorMessage",
    "CoordinatorOutput",
    "CoordinatorState",
    "Decided",
    "Decision",
    "DecisionLogged",
    "Expired",
    "Finished",
    "LogBegin",
    "LogDecision",
    "LogDone",
    "LogPrepared",
    "LogResolved",
    "ParticipantConfig",
    "ParticipantLogRecord",
    "ParticipantMessage",
    "ParticipantOutput",
    "ParticipantState",
    "Phase",
    "Prepare",
    "Prepared",
    "QueryDecision",
    "Refusal",
    "Reply",
    "SendAck",
    "SendDecision",
    "SendPrepare",
    "SendVote",
    "Tick",
    "TxnOutcome",
    "TxnState",
    "VersionConflict",
    "Vote",
    "decide_coordinator",
    "decide_participant",
    "in_doubt",
    "overdue",
    "recover",
    "recover_participant",
    "resume",
]


class Decision(StrEnum):
    """The outcome of a transaction, once logged never changed."""

    COMMIT = "commit"
    ABORT = "abort"


class Refusal(StrEnum):
    """Why a participant voted no."""

    COMPLIANCE = "compliance"  #: the data may not be held in this region
    LOCKED = "locked"  #: another prepared transaction holds the key
    VERSION_CONFLICT = "version_conflict"  #: ``expected_version`` is not the key's version
    LATE = "late"  #: the PREPARE came after the deadline, or after a decision


class Phase(StrEnum):
    """Where a transaction is at the coordinator."""

    LOGGING_BEGIN = "logging_begin"  #: waiting for the log to acknowledge the begin
    PREPARING = "preparing"  #: PREPARE sent, collecting votes
    DECIDING = "deciding"  #: decision chosen, waiting for the log to acknowledge it
    ANNOUNCING = "announcing"  #: decision logged and sent, collecting acknowledgements
    DONE = "done"  #: every participant acknowledged


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class VersionConflict:
    """A conditional write lost its race: the key was not at ``expected`` in ``region``."""

    region: str
    expected: int
    found: int


@dataclass(frozen=True, slots=True)
class TxnOutcome:
    """What the client is told: committed, or aborted with the reason.

    ``conflict`` is set when the abort is an ``expected_version`` mismatch: a result
    to report (the write lost a race), not an error.
    """

    decision: Decision
    reason: str | None = None
    conflict: VersionConflict | None = None

    @property
    def committed(self) -> bool:
        """True when the write was applied in every participant region."""
        return self.decision is Decision.COMMIT


@dataclass(frozen=True, slots=True)
class CoordinatorConfig:
    """``retry_ms``: how often what a transaction waits for is sent again.
    ``keep_done``: how many done transactions are kept (newest first) for
    ``saga list/show`` once their deadline has passed."""

    retry_ms: int = 1_000
    keep_done: int = 100


@dataclass(frozen=True, slots=True)
class ParticipantConfig:
    """``finished_retention_ms``: how long after its deadline a participant remembers a
    finished transaction (so a late duplicate is answered, not prepared again).
    ``query_after_ms``: how long after its deadline a prepared transaction without a
    decision is reported by :func:`overdue` (and asked of the decision log on Tick)."""

    finished_retention_ms: int = 600_000
    query_after_ms: int = 5_000


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Begin:
    """A client asks for a strong write of ``write`` to ``key``.

    ``participants``: the regions of the write's placement (at least one, no repeats).
    ``expected_version``: the key's version the write is conditional on (``None``: none).
    ``deadline_ms``: undecided by then, the transaction aborts. ``classes``: the
    data's classification, passed to each participant's compliance check.
    """

    txn_id: str
    key: str
    participants: tuple[str, ...]
    write: Any
    expected_version: int | None
    deadline_ms: int
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.participants:
            raise InvalidInput(
                f"transaction {self.txn_id!r} has no participant region: a strong write "
                "needs the regions of its placement; place the write first"
            )
        if len(set(self.participants)) != len(self.participants):
            raise InvalidInput(
                f"transaction {self.txn_id!r} names a participant region twice "
                f"({', '.join(self.participants)}): pass each placement region once"
            )


@dataclass(frozen=True, slots=True)
class BeginLogged:
    """The saga log acknowledged the transaction's :class:`LogBegin`."""

    txn_id: str


@dataclass(frozen=True, slots=True)
class Vote:
    """A participant's vote. ``version``: the key's version there when it voted.
    ``refusal`` says why a no vote is no (``reason`` says it in words)."""

    txn_id: str
    region: str
    yes: bool
    reason: str | None = None
    version: int | None = None
    refusal: Refusal | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: ``now_ms`` (the argument of the decide function) is the time."""


@dataclass(frozen=True, slots=True)
class DecisionLogged:
    """The saga log acknowledged the transaction's :class:`LogDecision` (``decision``
    echoes it: an acknowledgement of another decision than the one chosen is ignored)."""

    txn_id: str
    decision: Decision


@dataclass(frozen=True, slots=True)
class Ack:
    """A participant applied or dropped the write and released the key."""

    txn_id: str
    region: str


@dataclass(frozen=True, slots=True)
class Prepare:
    """PREPARE as a participant handles it: the coordinator's :class:`SendPrepare`
    plus what the shell reads locally: the key's ``current_version`` in the store
    (0 when absent) and ``may_hold``, whether compliance allows the data here."""

    txn_id: str
    key: str
    write: Any
    expected_version: int | None
    classes: tuple[str, ...]
    placement: tuple[str, ...]
    deadline_ms: int
    current_version: int
    may_hold: bool


@dataclass(frozen=True, slots=True)
class Decided:
    """COMMIT or ABORT for a transaction, as a participant receives it."""

    txn_id: str
    decision: Decision
    deadline_ms: int


CoordinatorMessage = Begin | BeginLogged | Vote | Tick | DecisionLogged | Ack
ParticipantMessage = Prepare | Decided | Tick


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class LogBegin:
    """Append the transaction to the saga log; answer with :class:`BeginLogged`."""

    begin: Begin

    @property
    def txn_id(self) -> str:
        """The transaction this record is about."""
        return self.begin.txn_id


@dataclass(frozen=True, slots=True)
class LogDecision:
    """Append the decision to the saga log; answer with :class:`DecisionLogged`.

    Nothing about the decision may be sent before that acknowledgement.
    """

    txn_id: str
    decision: Decision
    reason: str | None = None
    conflict: VersionConflict | None = None

    @property
    def outcome(self) -> TxnOutcome:
        """What the client is told."""
        return TxnOutcome(self.decision, self.reason, self.conflict)


@dataclass(frozen=True, slots=True)
class LogDone:
    """Append to the saga log that every participant acknowledged (best effort: without
    it, recovery announces the decision again, which participants acknowledge)."""

    txn_id: str


@dataclass(frozen=True, slots=True)
class SendPrepare:
    """Send PREPARE to ``region``; its shell adds the local facts (:meth:`to_prepare`)."""

    region: str
    txn_id: str
    key: str
    write: Any
    expected_version: int | None
    classes: tuple[str, ...]
    placement: tuple[str, ...]
    deadline_ms: int

    def to_prepare(self, *, current_version: int, may_hold: bool) -> Prepare:
        """The participant's message, with the key's version and the compliance answer."""
        return Prepare(
            self.txn_id, self.key, self.write, self.expected_version, self.classes,
            self.placement, self.deadline_ms, current_version, may_hold,
        )


@dataclass(frozen=True, slots=True)
class SendDecision:
    """Send the logged decision to ``region`` (delivered there as :class:`Decided`)."""

    region: str
    txn_id: str
    decision: Decision
    deadline_ms: int

    def to_decided(self) -> Decided:
        """The participant's message."""
        return Decided(self.txn_id, self.decision, self.deadline_ms)


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the client (may be sent more than once, always with the same decision)."""

    txn_id: str
    outcome: TxnOutcome


@dataclass(frozen=True, slots=True)
class Expired:
    """A request that arrived after its deadline for a transaction the coordinator
    holds no record of. Not a decision: either it was never begun (nothing was written)
    or it finished and was forgotten, and its :class:`Reply` went out before."""

    txn_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class LogPrepared:
    """A participant's durable record of its yes vote (append before the vote is sent)."""

    txn_id: str
    key: str
    write: Any
    deadline_ms: int
    version: int


@dataclass(frozen=True, slots=True)
class SendVote:
    """Send the vote to the coordinator."""

    vote: Vote


@dataclass(frozen=True, slots=True)
class ApplyWrite:
    """Apply the committed write to the region (idempotently, by ``txn_id``: after a
    crash between this and :class:`LogResolved` it is asked for again)."""

    txn_id: str
    key: str
    write: Any


@dataclass(frozen=True, slots=True)
class LogResolved:
    """A participant's durable record that a prepared transaction is finished."""

    txn_id: str
    decision: Decision


@dataclass(frozen=True, slots=True)
class SendAck:
    """Send the acknowledgement to the coordinator."""

    ack: Ack


@dataclass(frozen=True, slots=True)
class QueryDecision:
    """Look the transaction's decision up in the saga log; when one is there, deliver
    it as :class:`Decided` (none yet: the coordinator will send it)."""

    txn_id: str


CoordinatorOutput = (
    LogBegin | SendPrepare | LogDecision | SendDecision | Reply | Expired | LogDone
)
CoordinatorLogRecord = LogBegin | LogDecision | LogDone
ParticipantOutput = LogPrepared | SendVote | ApplyWrite | LogResolved | SendAck | QueryDecision
ParticipantLogRecord = LogPrepared | LogResolved


# --------------------------------------------------------------------------- coordinator


@dataclass(frozen=True, slots=True)
class TxnState:
    """One transaction at the coordinator (what ``saga show`` displays).

    ``votes`` by region; ``outcome`` once decided; ``acks``: regions that acknowledged
    the decision; ``retry_at_ms``: when what it waits for is sent again.
    """

    begin: Begin
    phase: Phase
    started_ms: int
    retry_at_ms: int
    votes: Mapping[str, Vote] = field(default_factory=dict)
    outcome: TxnOutcome | None = None
    acks: frozenset[str] = frozenset()

    @property
    def txn_id(self) -> str:
        """The transaction's id."""
        return self.begin.txn_id

    @property
    def decision(self) -> Decision | None:
        """The decision, once chosen."""
        return None if self.outcome is None else self.outcome.decision

    def waiting_for(self) -> tuple[str, ...]:
        """The participants whose vote (preparing) or acknowledgement (announcing) is
        still missing, in placement order."""
        if self.phase is Phase.PREPARING:
            return tuple(r for r in self.begin.participants if r not in self.votes)
        if self.phase is Phase.ANNOUNCING:
            return tuple(r for r in self.begin.participants if r not in self.acks)
        return ()


@dataclass(frozen=True, slots=True)
class CoordinatorState:
    """Every transaction one coordinator knows: ``live`` ones by id, and ``history``,
    the done ones (oldest first), kept for deduplication and ``saga list/show``.

    Immutable: each decision returns a new state (the maps are copied on change,
    never mutated).
    """

    config: CoordinatorConfig = CoordinatorConfig()
    live: Mapping[str, TxnState] = field(default_factory=dict)
    history: Mapping[str, TxnState] = field(default_factory=dict)

    def get(self, txn_id: str) -> TxnState | None:
        """The transaction, live or done, if known."""
        return self.live.get(txn_id) or self.history.get(txn_id)


def decide_coordinator(
    state: CoordinatorState, message: CoordinatorMessage, now_ms: int
) -> tuple[CoordinatorState, list[CoordinatorOutput]]:
    """Handle one message; returns the new state and the outputs to perform, in order."""
    if isinstance(message, Begin):
        return _begin(state, message, now_ms)
    if isinstance(message, BeginLogged):
        return _begin_logged(state, message, now_ms)
    if isinstance(message, Vote):
        return _vote(state, message, now_ms)
    if isinstance(message, DecisionLogged):
        return _decision_logged(state, message, now_ms)
    if isinstance(message, Ack):
        return _ack(state, message, now_ms)
    if isinstance(message, Tick):
        return _tick(state, now_ms)
    raise InvalidInput(
        f"{type(message).__name__} is not a coordinator message: pass Begin, BeginLogged, "
        "Vote, DecisionLogged, Ack or Tick"
    )


def _put(state: CoordinatorState, txn: TxnState) -> CoordinatorState:
    return replace(state, live={**state.live, txn.txn_id: txn})


def _begin(
    state: CoordinatorState, m: Begin, now_ms: int
) -> tuple[CoordinatorState, list[CoordinatorOutput]]:
    known = state.get(m.txn_id)
    if known is not None:  # a duplicate request: answer it once decided
        if known.outcome is not None and known.phase in (Phase.ANNOUNCING, Phase.DONE):
            return state, [Reply(m.txn_id, known.outcome)]
        return state, []
    if now_ms > m.deadline_ms:
        return state, [Expired(
            m.txn_id,
            f"the request arrived {now_ms - m.deadline_ms} ms after its deadline and the "
            "coordinator holds no record of it: nothing was done now. If this transaction "
            "was answered before, that answer stands; otherwise it was never begun: retry "
            "with a later deadline",
        )]
    txn = TxnState(m, Phase.LOGGING_BEGIN, now_ms, now_ms + state.config.retry_ms)
    return _put(state, txn), [LogBegin(m)]


def _prepares(txn: TxnState, regions: Iterable[str]) -> list[CoordinatorOutput]:
    b = txn.begin
    return [
        SendPrepare(
            r, b.txn_id, b.key, b.write, b.expected_version, b.classes, b.participants,
            b.deadline_ms,
        )
        for r in regions
    ]


def _begin_logged(
    state: CoordinatorState, m: BeginLogged, now_ms: int
) -> tuple[CoordinatorState, list[CoordinatorOutput]]:
    txn = state.live.get(m.txn_id)
    if txn is None or txn.phase is not Phase.LOGGING_BEGIN:
        return state, []
    if now_ms > txn.begin.deadline_ms:  # too late to prepare: abort (after the begin)
        reason = "timed out: the saga log acknowledged the transaction after its deadline"
        return _choose(state, txn, TxnOutcome(Decision.ABORT, reason), now_ms)
    txn = replace(txn, phase=Phase.PREPARING, retry_at_ms=now_ms + state.config.retry_ms)
    return _put(state, txn), _prepares(txn, txn.begin.participants)


def _choose(
    state: CoordinatorState, txn: TxnState, outcome: TxnOutcome, now_ms: int
) -> tuple[CoordinatorState, list[CoordinatorOutput]]:
    txn = replace(
        txn, phase=Phase.DECIDING, outcome=outcome, retry_at_ms=now_ms + state.config.retry_ms
    )
    return _put(state, txn), [_log_decision(txn, outcome)]


def _log_decision(txn: TxnState, outcome: TxnOutcome) -> LogDecision:
    return LogDecision(txn.txn_id, outcome.decision, outcome.reason, outcome.conflict)


def _vote(
    state: CoordinatorState, m: Vote, now_ms: int
) -> tuple[CoordinatorState, list[CoordinatorOutput]]:
    txn = state.live.get(m.txn_id)
    if (
        txn is None
        or txn.phase is not Phase.PREPARING
        or m.region not in txn.begin.participants
        or m.region in txn.votes  # the first vote of a region counts
    ):
        return state, []
    txn = replace(txn, votes={**txn.votes, m.region: m})
    if not m.yes:
        return _choose(state, txn, _refused(txn, m), now_ms)
    if len(txn.votes) == len(txn.begin.participants):
        return _choose(state, txn, TxnOutcome(Decision.COMMIT), now_ms)
    return _put(state, txn), []


def _refused(txn: TxnState, vote: Vote) -> TxnOutcome:
    reason = f"region {vote.region} voted no: {vote.reason or 'no reason given'}"
    expected = txn.begin.expected_version
    found = vote.version
    if vote.refusal is Refusal.VERSION_CONFLICT and expected is not None and found is not None:
        return TxnOutcome(Decision.ABORT, reason, VersionConflict(vote.region, expected, found))
    return TxnOutcome(Decision.ABORT, reason)


def _announce(txn: TxnState, regions: Iterable[str]) -> list[CoordinatorOutput]:
    assert txn.outcome is not None
    d, deadline = txn.outcome.decision, txn.begin.deadline_ms
    return [SendDecision(r, txn.txn_id, d, deadline) for r in regions]


def _decision_logged(
    state: CoordinatorState, m: DecisionLogged, now_ms: int
) -> tuple[CoordinatorState, list[CoordinatorOutput]]:
    txn = state.live.get(m.txn_id)
    if txn is None or txn.phase is not Phase.DECIDING or txn.decision is not m.decision:
        return state, []  # unknown, a duplicate acknowledgement, or not what was logged
    outcome = txn.outcome
    assert outcome is not None
    txn = replace(
        txn, phase=Phase.ANNOUNCING, acks=frozenset(), retry_at_ms=now_ms + state.config.retry_ms
    )
    outputs = _announce(txn, txn.begin.participants)
    outputs.append(Reply(txn.txn_id, outcome))
    return _put(state, txn), outputs


def _ack(
    state: CoordinatorState, m: Ack, now_ms: int
) -> tuple[CoordinatorState, list[CoordinatorOutput]]:
    txn = state.live.get(m.txn_id)
    if (
        txn is None
        or txn.phase is not Phase.ANNOUNCING
        or m.region not in txn.begin.participants
        or m.region in txn.acks
    ):
        return state, []
    txn = replace(txn, acks=txn.acks | {m.region})
    if len(txn.acks) < len(txn.begin.participants):
        return _put(state, txn), []
    done = replace(txn, phase=Phase.DONE)
    live = {k: v for k, v in state.live.items() if k != txn.txn_id}
    history = {**state.history, txn.txn_id: done}
    state = replace(state, live=live, history=_pruned(history, state.config, now_ms))
    return state, [LogDone(txn.txn_id)]


def _pruned(
    history: Mapping[str, TxnState], config: CoordinatorConfig, now_ms: int
) -> dict[str, TxnState]:
    """Keep the newest ``keep_done`` and every one whose deadline has not passed."""
    items = list(history.items())
    cut = len(items) - config.keep_done
    return {
        k: t for i, (k, t) in enumerate(items) if i >= cut or now_ms <= t.begin.deadline_ms
    }


def _awaited(txn: TxnState) -> list[CoordinatorOutput]:
    """What the transaction waits for, sent again."""
    if txn.phase is Phase.LOGGING_BEGIN:
        return [LogBegin(txn.begin)]
    if txn.phase is Phase.PREPARING:
        return _prepares(txn, txn.waiting_for())
    if txn.phase is Phase.DECIDING:
        assert txn.outcome is not None
        return [_log_decision(txn, txn.outcome)]
    if txn.phase is Phase.ANNOUNCING:
        return _announce(txn, txn.waiting_for())
    return []


def _tick(
    state: CoordinatorState, now_ms: int
) -> tuple[CoordinatorState, list[CoordinatorOutput]]:
    outputs: list[CoordinatorOutput] = []
    live = dict(state.live)
    retry = state.config.retry_ms
    for txn_id, txn in state.live.items():
        if txn.phase is Phase.PREPARING and now_ms > txn.begin.deadline_ms:
            waiting = ", ".join(txn.waiting_for())
            outcome = TxnOutcome(Decision.ABORT, f"timed out waiting for votes from {waiting}")
            decided = replace(
                txn, phase=Phase.DECIDING, outcome=outcome, retry_at_ms=now_ms + retry
            )
            live[txn_id] = decided
            outputs.append(_log_decision(decided, outcome))
        elif now_ms >= txn.retry_at_ms:
            live[txn_id] = replace(txn, retry_at_ms=now_ms + retry)
            outputs.extend(_awaited(txn))
    history = _pruned(state.history, state.config, now_ms)
    return replace(state, live=live, history=history), outputs


def recover(
    log_records: Iterable[CoordinatorLogRecord], config: CoordinatorConfig | None = None
) -> CoordinatorState:
    """Rebuild a coordinator from its saga log, oldest record first.

    A decided transaction is re-announced (phase ANNOUNCING, no acknowledgement
    counted); an undecided one is aborted (presumed abort: phase DECIDING, its abort
    to be logged); a done one is history. The first begin and the first decision of a
    transaction count. A decision without a begin cannot be written (see the module
    docstring) and is ignored. Then perform :func:`resume`'s outputs.
    """
    config = config or CoordinatorConfig()
    begins: dict[str, Begin] = {}
    decisions: dict[str, LogDecision] = {}
    done: set[str] = set()
    for record in log_records:
        if isinstance(record, LogBegin):
            begins.setdefault(record.txn_id, record.begin)
        elif isinstance(record, LogDecision):
            decisions.setdefault(record.txn_id, record)
        elif isinstance(record, LogDone):
            done.add(record.txn_id)
        else:
            raise InvalidInput(
                f"{type(record).__name__} is not a saga log record: the coordinator's "
                "log holds LogBegin, LogDecision and LogDone"
            )
    live: dict[str, TxnState] = {}
    history: dict[str, TxnState] = {}
    presumed = TxnOutcome(
        Decision.ABORT,
        "the coordinator restarted before deciding (presumed abort); retry the write",
    )
    for txn_id, begin in begins.items():
        logged = decisions.get(txn_id)
        if logged is None:
            live[txn_id] = TxnState(begin, Phase.DECIDING, 0, 0, outcome=presumed)
        elif txn_id in done:
            history[txn_id] = TxnState(begin, Phase.DONE, 0, 0, outcome=logged.outcome)
        else:
            live[txn_id] = TxnState(begin, Phase.ANNOUNCING, 0, 0, outcome=logged.outcome)
    return CoordinatorState(config, live, history)


def resume(state: CoordinatorState) -> list[CoordinatorOutput]:
    """The outputs that carry every live transaction forward after :func:`recover`:
    log the presumed aborts, send logged decisions again and answer their clients.

    Sends again only what the state says is awaited, so it is safe on any state.
    """
    outputs: list[CoordinatorOutput] = []
    for txn in state.live.values():
        outputs.extend(_awaited(txn))
        if txn.phase is Phase.ANNOUNCING and txn.outcome is not None:
            outputs.append(Reply(txn.txn_id, txn.outcome))
    return outputs


# --------------------------------------------------------------------------- participant


@dataclass(frozen=True, slots=True)
class Prepared:
    """A transaction this participant voted yes for and has no decision for yet.

    ``version``: the key's version when it voted (reported again on a duplicate PREPARE).
    """

    txn_id: str
    key: str
    write: Any
    deadline_ms: int
    version: int


@dataclass(frozen=True, slots=True)
class Finished:
    """A transaction this participant voted no for, or has the decision of.

    ``vote``: the vote it gave (``None``: it never got the PREPARE).
    """

    txn_id: str
    deadline_ms: int
    vote: Vote | None = None
    decision: Decision | None = None


@dataclass(frozen=True, slots=True)
class ParticipantState:
    """One region's side of every transaction: ``prepared`` (in doubt: holding the
    key), ``locks`` (key -> txn_id), ``finished`` (remembered for late duplicates).

    Immutable: each decision returns a new state.
    """

    region: str
    config: ParticipantConfig = ParticipantConfig()
    prepared: Mapping[str, Prepared] = field(default_factory=dict)
    locks: Mapping[str, str] = field(default_factory=dict)
    finished: Mapping[str, Finished] = field(default_factory=dict)


def decide_participant(
    state: ParticipantState, message: ParticipantMessage, now_ms: int
) -> tuple[ParticipantState, list[ParticipantOutput]]:
    """Handle one message; returns the new state and the outputs to perform, in order."""
    if isinstance(message, Prepare):
        return _prepare(state, message, now_ms)
    if isinstance(message, Decided):
        return _decided(state, message)
    if isinstance(message, Tick):
        return _participant_tick(state, now_ms)
    raise InvalidInput(
        f"{type(message).__name__} is not a participant message: pass Prepare, Decided "
        "or Tick"
    )


def _refuse(
    state: ParticipantState, m: Prepare, refusal: Refusal, reason: str
) -> tuple[ParticipantState, list[ParticipantOutput]]:
    vote = Vote(m.txn_id, state.region, False, reason, m.current_version, refusal)
    finished = {**state.finished, m.txn_id: Finished(m.txn_id, m.deadline_ms, vote)}
    return replace(state, finished=finished), [SendVote(vote)]


def _prepare(
    state: ParticipantState, m: Prepare, now_ms: int
) -> tuple[ParticipantState, list[ParticipantOutput]]:
    region = state.region
    held = state.prepared.get(m.txn_id)
    if held is not None:  # a duplicate PREPARE: the same yes
        return state, [SendVote(Vote(m.txn_id, region, True, version=held.version))]
    done = state.finished.get(m.txn_id)
    if done is not None:
        if done.vote is not None:
            return state, [SendVote(done.vote)]
        late = f"the transaction was already decided ({done.decision}) when its PREPARE came"
        vote = Vote(m.txn_id, region, False, late, m.current_version, Refusal.LATE)
        return state, [SendVote(vote)]
    if now_ms > m.deadline_ms:
        return _refuse(
            state, m, Refusal.LATE,
            f"the PREPARE came {now_ms - m.deadline_ms} ms after the transaction's deadline",
        )
    if not m.may_hold or region not in m.placement:
        classes = ", ".join(m.classes) or "unclassified"
        return _refuse(
            state, m, Refusal.COMPLIANCE,
            f"compliance: region {region} may not hold data classified {classes}; "
            "place the write in regions its classification allows",
        )
    holder = state.locks.get(m.key)
    if holder is not None:
        return _refuse(
            state, m, Refusal.LOCKED,
            f"key {m.key!r} locked by txn {holder} (prepared, waiting for its decision); "
            "retry the write",
        )
    if m.expected_version is not None and m.expected_version != m.current_version:
        return _refuse(
            state, m, Refusal.VERSION_CONFLICT,
            f"expected version {m.expected_version}, found {m.current_version}",
        )
    prepared = Prepared(m.txn_id, m.key, m.write, m.deadline_ms, m.current_version)
    state = replace(
        state,
        prepared={**state.prepared, m.txn_id: prepared},
        locks={**state.locks, m.key: m.txn_id},
    )
    vote = Vote(m.txn_id, region, True, version=m.current_version)
    return state, [
        LogPrepared(m.txn_id, m.key, m.write, m.deadline_ms, m.current_version),
        SendVote(vote),
    ]


def _decided(
    state: ParticipantState, m: Decided
) -> tuple[ParticipantState, list[ParticipantOutput]]:
    ack = SendAck(Ack(m.txn_id, state.region))
    held = state.prepared.get(m.txn_id)
    if held is None:
        done = state.finished.get(m.txn_id)
        if done is not None and done.decision is not None:
            return state, [ack]  # a duplicate decision
        vote = None if done is None else done.vote
        finished = {**state.finished, m.txn_id: Finished(m.txn_id, m.deadline_ms, vote, m.decision)}
        return replace(state, finished=finished), [ack]
    state = _resolve(state, held, m.decision)
    outputs: list[ParticipantOutput] = []
    if m.decision is Decision.COMMIT:
        outputs.append(ApplyWrite(held.txn_id, held.key, held.write))
    outputs += [LogResolved(held.txn_id, m.decision), ack]
    return state, outputs


def _finished_yes(region: str, held: Prepared, decision: Decision) -> Finished:
    vote = Vote(held.txn_id, region, True, version=held.version)
    return Finished(held.txn_id, held.deadline_ms, vote, decision)


def _resolve(state: ParticipantState, held: Prepared, decision: Decision) -> ParticipantState:
    return replace(
        state,
        prepared={k: v for k, v in state.prepared.items() if k != held.txn_id},
        locks={k: v for k, v in state.locks.items() if v != held.txn_id},
        finished={**state.finished, held.txn_id: _finished_yes(state.region, held, decision)},
    )


def _participant_tick(
    state: ParticipantState, now_ms: int
) -> tuple[ParticipantState, list[ParticipantOutput]]:
    keep = state.config.finished_retention_ms
    finished = {k: f for k, f in state.finished.items() if now_ms <= f.deadline_ms + keep}
    if len(finished) != len(state.finished):
        state = replace(state, finished=finished)
    return state, [QueryDecision(t) for t in overdue(state, now_ms)]


def in_doubt(state: ParticipantState) -> list[str]:
    """Prepared transactions without a decision, sorted: a restarted participant looks
    each one up in the decision log (and waits for the coordinator if none is there)."""
    return sorted(state.prepared)


def overdue(state: ParticipantState, now_ms: int) -> list[str]:
    """In-doubt transactions ``query_after_ms`` past their deadline, sorted: the
    coordinator must have decided them by now; ask the decision log."""
    after = state.config.query_after_ms
    return sorted(t for t, p in state.prepared.items() if now_ms > p.deadline_ms + after)


def recover_participant(
    region: str,
    records: Iterable[ParticipantLogRecord],
    config: ParticipantConfig | None = None,
) -> ParticipantState:
    """Rebuild a participant from its own log (oldest first): prepared transactions
    without a resolved record are in doubt again and hold their keys (:func:`in_doubt`);
    resolved ones are remembered as finished.
    """
    prepared: dict[str, Prepared] = {}
    finished: dict[str, Finished] = {}
    for record in records:
        if isinstance(record, LogPrepared):
            if record.txn_id not in finished and record.txn_id not in prepared:
                prepared[record.txn_id] = Prepared(
                    record.txn_id, record.key, record.write, record.deadline_ms, record.version
                )
        elif isinstance(record, LogResolved):
            held = prepared.pop(record.txn_id, None)
            if held is not None:
                finished[held.txn_id] = _finished_yes(region, held, record.decision)
        else:
            raise InvalidInput(
                f"{type(record).__name__} is not a participant log record: a participant's "
                "log holds LogPrepared and LogResolved"
            )
    locks = {p.key: t for t, p in prepared.items()}
    return ParticipantState(region, config or ParticipantConfig(), prepared, locks, finished)
