"""The commit log: two-phase commit of strong writes as a fold over one Kafka partition.

A strong write is a transaction on one key. Every message of its two-phase commit is a
record appended to the commit log (topic ``edgebus.<log region>.saga``), keyed by the
written key, so all records of all transactions on a key sit in one partition, in one
order that every reader sees:

* :class:`BeginRecord`: the client asks for the write. It is the PREPARE: every
  participant (every region of the write's placement) reads it from the log. It does
  not carry the data: the log lies in one region's cluster, which may be one the data
  may not be held in. The client first stages the payload in every participant's own
  topic ``edgebus.<region>.staged`` and the BEGIN carries only a salted digest of it
  (:mod:`edgebus.core.staged_write`); each participant votes, and applies a COMMIT,
  with the payload staged in its region. (A BEGIN with its payload inline, as clients
  before staging wrote it, is still a valid request.)
* :class:`VoteRecord`: a participant's yes (it locked the key) or no (and why).
* :class:`DecisionRecord`: a coordinator's COMMIT (every participant voted yes before
  it) or ABORT (a no vote, or the deadline passed).
* :class:`AckRecord`: a participant applied the commit (or dropped the aborted write)
  and released the key.

The log decides
---------------
The *first* vote of a region and the *first* decision of a transaction in the log are
the ones that count, for everyone: coordinators, participants, clients and tools fold
the same records in the same order, so they agree without talking to each other. Two
coordinators racing on one transaction (a rebalance, a restart) cannot contradict each
other: the later decision is ignored everywhere. Hence no fencing is needed, and
recovery is reading the log again: a transaction with a decision is carried forward
(participants apply it, the client gets it), one without a decision is aborted by any
coordinator once its deadline has passed (presumed abort: nobody can have applied it,
since a participant applies only a logged COMMIT).

A COMMIT counts only if the log backs it: a coordinator appends one only after it read
a yes vote of every participant, from this same partition (votes and decisions are
keyed by the written key), so every reader folds those votes before it. A COMMIT
without them (written by someone else: forged, or corrupt) is refused, for every
reader alike: the transaction stays undecided, as if it had never come, and is
decided as any other (a coordinator commits on every yes vote, aborts on a no or at
the deadline). The refusal is kept (:attr:`Txn.refused`) and reported
(:attr:`PartitionLog.last_refused`) for the caller to log or count. An ABORT counts
whenever it comes: any participant or coordinator may abort, and nothing is applied.

A participant's vote is the one non-deterministic step (it depends on the key's
version in the participant's store, on its locks and on the payload staged in its
region); once in the log it is a fact.
The log is the participant's prepared record: a yes vote in the log holds the key until
the decision is in the log too. :func:`participant_vote` applies the vote rule
(late, compliance, lock, ``expected_version``: :func:`edgebus.core.commit_vote.vote`)
to a BEGIN record.

Pure: no I/O, no clock; ``now_ms`` is passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from edgebus.core.commit_vote import Decision, Refusal, TxnOutcome, VersionConflict, Vote, vote

__all__ = [
    "MAX_REFUSED_KEPT",
    "MAX_TXN_ID_CHARS",
    "RETENTION_MS",
    "AckRecord",
    "BeginRecord",
    "DecisionRecord",
    "LogRecord",
    "PartitionLog",
    "RefusedDecision",
    "Txn",
    "TxnStatus",
    "committed_version",
    "coordinator_decision",
    "lock_holders",
    "participant_vote",
    "recent",
    "unbacked_commit",
]


@dataclass(frozen=True, slots=True)
class BeginRecord:
    """A client's request for a strong write (the PREPARE).

    ``payload``: the data as JSON bytes, inline (``None`` for a delete, and for a
    staged write: :mod:`edgebus.core.staged_write`). ``placement``: the participants.
    ``hlc``: the client's hybrid logical clock, packed (``wall_ms << 16 | logical``).
    ``staged_digest``: of a staged write, the commitment to the payload staged in each
    participant's own region (:func:`edgebus.core.staged_write.staged_digest`).
    """

    txn_id: str
    key: str
    operation: str
    payload: bytes | None
    placement: tuple[str, ...]
    classification: tuple[str, ...]
    expected_version: int | None
    deadline_ms: int
    hlc: int
    writer: str
    time_ms: int
    staged_digest: bytes | None = None

    @property
    def staged(self) -> bool:
        """Whether the data is staged in the participants' own topics (no payload
        inline, not a delete)."""
        return self.payload is None and self.operation != "delete"


@dataclass(frozen=True, slots=True)
class VoteRecord:
    """A participant's vote (``vote.region`` is the participant)."""

    txn_id: str
    key: str
    vote: Vote
    writer: str
    time_ms: int


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """A coordinator's decision. ``hlc``: the commit's timestamp (packed);
    ``version``: the key's version after a commit."""

    txn_id: str
    key: str
    outcome: TxnOutcome
    hlc: int
    version: int | None
    writer: str
    time_ms: int

    @property
    def committed(self) -> bool:
        """True for COMMIT."""
        return self.outcome.decision is Decision.COMMIT


@dataclass(frozen=True, slots=True)
class AckRecord:
    """A participant finished the transaction: applied a commit (``position`` of the
    event it wrote, ``region:partition:offset``) or dropped an abort."""

    txn_id: str
    key: str
    region: str
    position: str | None
    writer: str
    time_ms: int


LogRecord = BeginRecord | VoteRecord | DecisionRecord | AckRecord


@dataclass(frozen=True, slots=True)
class RefusedDecision:
    """A COMMIT the fold did not take as the decision: the log does not back it (no yes
    vote of every participant before it). ``offset``: where it sits; ``reason``: why;
    ``participants``: its transaction's, as folded (none when its BEGIN was not read)."""

    offset: int
    record: DecisionRecord
    reason: str
    participants: tuple[str, ...] = ()


class TxnStatus:
    """Where a transaction is, as the log tells it."""

    PREPARING = "preparing"  #: begun, undecided
    COMMITTED = "committed"  #: decided COMMIT, not every participant has acknowledged
    ABORTED = "aborted"  #: decided ABORT, not every participant has acknowledged
    DONE_COMMITTED = "done-committed"  #: committed and applied everywhere
    DONE_ABORTED = "done-aborted"  #: aborted and released everywhere


@dataclass(slots=True)
class Txn:
    """What the log says about one transaction so far (first vote per region, first
    decision the log backs; later duplicates are ignored). ``*_offset``: where the
    record sits. ``refused``: the first :data:`MAX_REFUSED_KEPT` COMMITs refused while
    it was undecided (:func:`unbacked_commit`), a record sent again kept once."""

    txn_id: str
    key: str
    begin: BeginRecord | None = None
    begin_offset: int = -1
    votes: dict[str, Vote] = field(default_factory=dict)
    decision: DecisionRecord | None = None
    decision_offset: int = -1
    acks: dict[str, AckRecord] = field(default_factory=dict)
    refused: list[RefusedDecision] = field(default_factory=list)
    last_offset: int = -1  #: of its latest record folded, duplicates included

    @property
    def participants(self) -> tuple[str, ...]:
        """The regions of the write's placement (empty before the begin is read)."""
        return self.begin.placement if self.begin is not None else ()

    @property
    def status(self) -> str:
        """One of :class:`TxnStatus`."""
        if self.decision is None:
            return TxnStatus.PREPARING
        acked = all(r in self.acks for r in self.participants)
        if self.decision.committed:
            return TxnStatus.DONE_COMMITTED if acked else TxnStatus.COMMITTED
        return TxnStatus.DONE_ABORTED if acked else TxnStatus.ABORTED

    @property
    def finished(self) -> bool:
        """Decided, and every participant acknowledged."""
        return self.status in (TxnStatus.DONE_COMMITTED, TxnStatus.DONE_ABORTED)


#: how long after its deadline a decided transaction is still remembered (folded again
#: after a restart): duplicates of its records arriving later than that are not
#: recognised. edgebus's client never sends a BEGIN twice; Kafka's idempotent producer
#: drops its own retries.
RETENTION_MS = 120_000
#: a transaction id is a UUID (36 characters); a participant refuses longer ones
MAX_TXN_ID_CHARS = 200
#: how many refused COMMITs a transaction keeps (:attr:`Txn.refused`); later ones are
#: reported by :attr:`PartitionLog.last_refused` all the same
MAX_REFUSED_KEPT = 10


class PartitionLog:
    """The fold of one commit-log partition: transactions by id, in log order.

    :meth:`fold` takes records in offset order (offsets may skip: compaction, aborted
    Kafka transactions, records of other kinds); a record that changes nothing (a
    duplicate, a refused COMMIT) returns ``None``.
    """

    def __init__(self) -> None:
        self.txns: dict[str, Txn] = {}
        self.position = 0  #: the offset after the last record folded
        #: the record last folded, when it was a COMMIT refused (:func:`unbacked_commit`):
        #: the caller logs or counts it; ``None`` after any other record
        self.last_refused: RefusedDecision | None = None

    def fold(self, offset: int, record: LogRecord) -> Txn | None:
        """Fold one record; returns the transaction it changed, if any."""
        self.position = max(self.position, offset + 1)
        self.last_refused = None
        txn = self.txns.get(record.txn_id)
        if (
            isinstance(record, DecisionRecord)
            and record.committed
            and (txn is None or txn.decision is None)
        ):
            reason = _NO_BEGIN if txn is None else unbacked_commit(txn)
            if reason is not None:
                placement = txn.participants if txn is not None else ()
                self.last_refused = refused = RefusedDecision(offset, record, reason, placement)
                if txn is not None:  # (one of a transaction never seen is not remembered)
                    txn.last_offset = max(txn.last_offset, offset)
                    if len(txn.refused) < MAX_REFUSED_KEPT and all(
                        r.record != record for r in txn.refused
                    ):
                        txn.refused.append(refused)
                return None
        if txn is None:
            txn = self.txns[record.txn_id] = Txn(record.txn_id, record.key)
        txn.last_offset = max(txn.last_offset, offset)
        if isinstance(record, BeginRecord):
            if txn.begin is not None:
                return None  # a retried request: the first one counts
            txn.begin, txn.begin_offset = record, offset
            return txn
        if isinstance(record, VoteRecord):
            region = record.vote.region
            if region in txn.votes or txn.decision is not None:
                return None  # a region votes once; a vote after the decision is moot
            if txn.begin is not None and region not in txn.begin.placement:
                return None  # not a participant
            txn.votes[region] = record.vote
            return txn
        if isinstance(record, DecisionRecord):
            if txn.decision is not None:
                return None  # the first decision in the log is the decision
            txn.decision, txn.decision_offset = record, offset
            return txn
        if record.region in txn.acks:
            return None
        txn.acks[record.region] = record
        return txn

    def undecided(self) -> list[Txn]:
        """Begun, not decided, in log order."""
        return [t for t in self.txns.values() if t.decision is None and t.begin is not None]

    def low_water(self, needed: Callable[[Txn], bool]) -> int:
        """The offset to read this partition again from, so that every transaction for
        which ``needed`` is true is folded whole: its begin offset (the smallest), or
        :attr:`position` when none is needed."""
        offsets = [t.begin_offset for t in self.txns.values() if t.begin_offset >= 0 and needed(t)]
        return min(offsets, default=self.position)

    def resume_offset(
        self, now_ms: int, needed: Callable[[Txn], bool], retention_ms: int = RETENTION_MS
    ) -> int:
        """Where a reader restarting now should read this partition again from: the
        :meth:`low_water` of the ``needed`` transactions and of every transaction whose
        deadline passed less than ``retention_ms`` ago, so that a late duplicate of one
        of its records (a retried BEGIN, a vote sent twice) is read after the original
        and recognised as a duplicate; and never between a transaction's begin and a
        later record of it (one that came in time, folded here), which would be read
        again without its original. A transaction pruned is no longer known here: prune
        only what the resume offset no longer needs."""
        start = self.low_water(lambda t: needed(t) or recent(t, now_ms, retention_ms))
        while True:  # never start between a transaction's begin and a later record of it
            back = [
                t.begin_offset
                for t in self.txns.values()
                if 0 <= t.begin_offset < start <= t.last_offset
            ]
            if not back:
                return start
            start = min(back)

    def compact(
        self, now_ms: int, needed: Callable[[Txn], bool], retention_ms: int = RETENTION_MS
    ) -> int:
        """Forget every transaction whose records all lie before
        :meth:`resume_offset`: keep what a reader restarting now would fold again.
        Returns how many were forgotten."""
        start = self.resume_offset(now_ms, needed, retention_ms)
        return self.prune(lambda t: t.last_offset >= start)

    def prune(self, keep: Callable[[Txn], bool]) -> int:
        """Forget transactions ``keep`` rejects; returns how many were forgotten."""
        drop = [k for k, t in self.txns.items() if not keep(t)]
        for k in drop:
            del self.txns[k]
        return len(drop)


_NO_BEGIN = (
    "a COMMIT of a transaction whose BEGIN is not in the log before it: no coordinator decided it"
)


def unbacked_commit(txn: Txn) -> str | None:
    """Why a COMMIT of the undecided ``txn`` folded now would not be backed by the log
    (then refused), or ``None``: the fold must have read ``txn``'s BEGIN and a yes vote
    (its first vote) of every region of its placement, as every coordinator did before
    it appended a COMMIT."""
    begin = txn.begin
    if begin is None:
        return _NO_BEGIN
    if not begin.placement:
        return "a COMMIT of a write without participant regions: no coordinator decided it"
    missing = [r for r in begin.placement if r not in txn.votes or not txn.votes[r].yes]
    if missing:
        return (
            f"a COMMIT without a yes vote of {', '.join(missing)} before it in the log: "
            "no coordinator decided it"
        )
    return None


def recent(txn: Txn, now_ms: int, retention_ms: int = RETENTION_MS) -> bool:
    """True while ``txn``'s deadline passed less than ``retention_ms`` ago (or not yet)."""
    return txn.begin is not None and now_ms <= txn.begin.deadline_ms + retention_ms


def coordinator_decision(txn: Txn, now_ms: int, *, may_time_out: bool = True) -> TxnOutcome | None:
    """What a coordinator decides for ``txn`` now, or ``None`` to wait.

    COMMIT once every participant voted yes (even past the deadline: the votes are
    facts); ABORT on the first no vote (a version conflict is reported as such) or when
    the deadline passed first; nothing for a transaction that is decided already or
    whose begin is not folded. ``may_time_out=False``: the caller has not read its
    partition to the end, so missing votes may be in the log already: no timeout abort.
    """
    begin = txn.begin
    if begin is None or txn.decision is not None:
        return None
    for region in begin.placement:
        vote = txn.votes.get(region)
        if vote is not None and not vote.yes:
            return _refused(begin, vote)
    if not begin.placement:
        return TxnOutcome(Decision.ABORT, "the write has no participant region")
    if all(r in txn.votes for r in begin.placement):
        return TxnOutcome(Decision.COMMIT)
    if may_time_out and now_ms > begin.deadline_ms:
        silent = [r for r in begin.placement if r not in txn.votes]
        return TxnOutcome(
            Decision.ABORT,
            f"timed out: {', '.join(silent)} did not vote before the deadline "
            "(region service down or behind); retry the write",
        )
    return None


def _refused(begin: BeginRecord, vote: Vote) -> TxnOutcome:
    reason = f"region {vote.region} voted no: {vote.reason or 'no reason given'}"
    expected, found = begin.expected_version, vote.version
    if vote.refusal is Refusal.VERSION_CONFLICT and expected is not None and found is not None:
        return TxnOutcome(Decision.ABORT, reason, VersionConflict(vote.region, expected, found))
    return TxnOutcome(Decision.ABORT, reason)


def committed_version(txn: Txn) -> int | None:
    """The key's version after ``txn`` commits: one more than the participants' (the
    largest, should they differ)."""
    versions = [v.version for v in txn.votes.values() if v.yes and v.version is not None]
    return max(versions) + 1 if versions else None


def participant_vote(
    begin: BeginRecord,
    region: str,
    *,
    current_version: int,
    may_hold: bool,
    holder: str | None,
    now_ms: int,
) -> Vote:
    """The vote of ``region`` on ``begin`` (:func:`edgebus.core.commit_vote.vote`):
    deadline, compliance, the key's lock held by ``holder``, then ``expected_version``
    against ``current_version``."""
    return vote(
        begin.txn_id,
        region,
        key=begin.key,
        placement=begin.placement,
        classes=begin.classification,
        expected_version=begin.expected_version,
        deadline_ms=begin.deadline_ms,
        current_version=current_version,
        may_hold=may_hold,
        holder=holder,
        now_ms=now_ms,
    )


def lock_holders(txns: Iterable[Txn], region: str) -> dict[str, str]:
    """key -> txn_id of every transaction ``region`` voted yes on (in the log) that is
    not decided yet: the keys ``region`` holds locked. A vote without its begin (read
    from past the begin: the transaction was decided before) holds nothing."""
    out: dict[str, str] = {}
    for t in txns:
        if t.begin is None:
            continue  # folded from past its begin: decided before (a stray duplicate vote)
        vote = t.votes.get(region)
        if vote is not None and vote.yes and t.decision is None:
            out[t.key] = t.txn_id
    return out
