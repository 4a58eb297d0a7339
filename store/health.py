"""Deal health: a 0–100 score for each open opportunity, with its reasons, from the method.

What counts (points when all is well; a check that does not apply yet at the opportunity's
funnel step is left out and the score is scaled to 100 over the checks that do):

| check | points | applies (steps) |
|---|---|---|
| qualification checks passed (need, timetable, budget, can win, ...) | 20 | analysis–commitment |
| the decision maker identified, met, and the relationship stage with them | 15 | trust on |
| the insider level reached (none, low, mid, high) | 10 | all |
| the buying-process phase consistent with the funnel step | 10 | all |
| SPIN coverage: situation/problem, implication, need-payoff asked | 15 | needs–commitment |
| buying signals seen | 10 | value–commitment |
| days since the last activity, against the step's stalled threshold | 10 | all |
| a next step with a date that has not passed | 10 | all |

After the contract (deposit, order, collection) qualifying, SPIN and signals are history and
no longer count.

Computed for any number of opportunities with four queries (the opportunities, their accounts'
contacts, SPIN counts, signal counts; per 5,000 ids), grouped in SQL, then one pass in Python —
never one query per opportunity. Reasons are codes with parameters; the catalogs (`health.*` keys in
dialogs/locales/*/lookups.yaml) turn them into sentences, so the digest can show them too.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, String, func, literal, select, union_all
from sqlalchemy.orm import Session

from store.enums import (
    OPEN_STAGES,
    BuyingPhase,
    BuyingRole,
    FunnelStage,
    InsiderLevel,
    QualificationCheck,
    RelationshipStage,
)
from store.models import BuyingSignal, Contact, Opportunity, Org, SpinEntry

STAGE_ORDER: tuple[str, ...] = (
    FunnelStage.ANALYSIS, FunnelStage.TRUST, FunnelStage.NEEDS, FunnelStage.VALUE,
    FunnelStage.COMMITMENT, FunnelStage.DEPOSIT, FunnelStage.ORDER, FunnelStage.COLLECTION,
)
STAGE_INDEX = {stage: i for i, stage in enumerate(STAGE_ORDER)}

# days without activity after which an open opportunity is stalled, per funnel step; an org
# overrides them in `orgs.settings["stalled_days"]`
DEFAULT_STALLED_DAYS: dict[str, int] = {
    "analysis": 30, "trust": 21, "needs": 21, "value": 14, "commitment": 10, "deposit": 7,
    "order": 14, "collection": 14,
}

# the buying-process phases that fit each funnel step (METHODOLOGY.md, step 3)
EXPECTED_PHASES: dict[str, frozenset[str | None]] = {
    FunnelStage.ANALYSIS: frozenset({None, BuyingPhase.DISCOVER}),
    FunnelStage.TRUST: frozenset({None, BuyingPhase.DISCOVER, BuyingPhase.DELIBERATION}),
    FunnelStage.NEEDS: frozenset({BuyingPhase.DELIBERATION, BuyingPhase.DESIGN}),
    FunnelStage.VALUE: frozenset({BuyingPhase.DESIGN, BuyingPhase.EVALUATION}),
    FunnelStage.COMMITMENT: frozenset({BuyingPhase.EVALUATION, BuyingPhase.COMMITMENT}),
    FunnelStage.DEPOSIT: frozenset({BuyingPhase.COMMITMENT}),
    FunnelStage.ORDER: frozenset({BuyingPhase.COMMITMENT, BuyingPhase.USE}),
    FunnelStage.COLLECTION: frozenset({BuyingPhase.COMMITMENT, BuyingPhase.USE}),
}

_RELATIONSHIP_POINTS: dict[str, int] = {RelationshipStage.ACQUAINT: 5, RelationshipStage.DATE: 9,
                        RelationshipStage.TRUST: 13, RelationshipStage.ALLIANCE: 15}
_INSIDER_POINTS: dict[str, int] = {InsiderLevel.NONE: 0, InsiderLevel.LOW: 4, InsiderLevel.MID: 7,
                   InsiderLevel.HIGH: 10}
_INSIDER_ORDER = (InsiderLevel.NONE, InsiderLevel.LOW, InsiderLevel.MID, InsiderLevel.HIGH)
_NOT_PASSED = frozenset({"", "no", "false", "unknown", "n", "否", "不", "未知"})


@dataclass(frozen=True)
class Reason:
    """One check: `points` of `max_points`; `code` names the catalog text `health.<code>`."""

    code: str
    points: int
    max_points: int
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.points >= self.max_points


@dataclass(frozen=True)
class Health:
    opportunity_id: uuid.UUID
    score: int
    # problems first (most points lost first), then what is fine
    reasons: tuple[Reason, ...]

    @property
    def problems(self) -> tuple[Reason, ...]:
        return tuple(r for r in self.reasons if not r.ok)


@dataclass(frozen=True)
class ContactFacts:
    name: str
    buying_roles: tuple[str, ...]
    relationship_stage: str | None
    insider_level: str | None


@dataclass(frozen=True)
class OppFacts:
    id: uuid.UUID
    account_id: uuid.UUID
    stage: str
    phase: str | None
    qualification: Mapping[str, Any]
    next_step: str | None
    next_step_due: date | None
    last_activity_at: datetime | None
    stage_entered_at: datetime | None
    created_at: datetime | None


def stalled_days(session: Session, org_id: uuid.UUID) -> dict[str, int]:
    """The org's stalled thresholds per funnel step (its settings over the defaults)."""
    settings = session.execute(select(Org.settings).where(Org.id == org_id)).scalar() or {}
    merged = dict(DEFAULT_STALLED_DAYS)
    for stage, days in (settings.get("stalled_days") or {}).items():
        try:
            merged[str(stage)] = int(days)
        except (TypeError, ValueError):
            continue
    return merged


def passed(value: Any, key: str | None = None, today: date | None = None) -> bool:
    """A qualification answer that counts as passed, by the rules of the verdict in
    `dialogs/flows/qualify.yaml` (tests/dialogs/test_qualification_keys.py keeps the two
    the same): a clear need, a timetable within twelve months, a known budget, a chance to
    win of 3 or more, worth it, our strength. True always passes (older data and the demo)."""
    if value is None or value is False:
        return False
    if value is True:
        return True
    if key == QualificationCheck.NEED:
        return str(value).strip().casefold() in ("yes", "true")
    if key == QualificationCheck.CAN_WIN:
        try:
            return int(str(value)) >= 3
        except ValueError:
            return False
    if key == QualificationCheck.TIMETABLE:
        try:
            when = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
        except ValueError:  # a timetable in words ("Q1 next year"), from older data
            return str(value).strip().casefold() not in _NOT_PASSED
        return today is None or when <= today + timedelta(days=365)
    return str(value).strip().casefold() not in _NOT_PASSED


def idle_days(facts: OppFacts, now: datetime) -> int:
    last = facts.last_activity_at or facts.stage_entered_at or facts.created_at
    return max(0, (now - last).days) if last is not None else 0


def evaluate(facts: OppFacts, contacts: Iterable[ContactFacts], spin: Mapping[str, int],
             signals: int, *, now: datetime, today: date,
             thresholds: Mapping[str, int]) -> Health:
    """The health of one opportunity from facts already fetched (no I/O)."""
    step = STAGE_INDEX.get(facts.stage, 0)
    contacts = list(contacts)
    reasons: list[Reason] = []
    # once the contract is signed, qualifying, SPIN and buying signals are history
    signed = step >= STAGE_INDEX[FunnelStage.DEPOSIT]

    if not signed:
        checks = [c.value for c in QualificationCheck]
        ok = [c for c in checks if passed(facts.qualification.get(c), c, today)]
        missing = [c for c in checks if c not in ok]
        reasons.append(Reason("qual_ok" if not missing else "qual_partial",
                              round(20 * len(ok) / len(checks)), 20,
                              {"passed": len(ok), "total": len(checks), "missing": missing}))

    if step >= STAGE_INDEX[FunnelStage.TRUST]:
        deciders = [c for c in contacts if BuyingRole.DECISION_MAKER in c.buying_roles]
        if not deciders:
            reasons.append(Reason("dm_none", 0, 15))
        else:
            best = max(deciders, key=lambda c: _RELATIONSHIP_POINTS.get(
                c.relationship_stage or "", 0))
            points = _RELATIONSHIP_POINTS.get(best.relationship_stage or "", 0)
            if points == 0:
                reasons.append(Reason("dm_unmet", 0, 15, {"name": best.name}))
            else:
                # trust or alliance with the decision maker is what the method asks for
                reasons.append(Reason("dm_stage", 15 if points >= 13 else points, 15,
                                      {"name": best.name,
                                       "relationship": best.relationship_stage or ""}))

    levels = [c.insider_level for c in contacts if c.insider_level in _INSIDER_POINTS]
    level = max(levels, key=_INSIDER_ORDER.index) if levels else InsiderLevel.NONE
    reasons.append(Reason("insider_none" if level == InsiderLevel.NONE else "insider_level",
                          _INSIDER_POINTS[level], 10, {"level": str(level)}))

    expected = EXPECTED_PHASES.get(facts.stage, frozenset({None}))
    if facts.phase in expected:
        code = "phase_ok" if facts.phase else "phase_early"
        reasons.append(Reason(code, 10, 10, {"phase": facts.phase or "",
                                              "stage": facts.stage}))
    elif facts.phase is None:
        reasons.append(Reason("phase_missing", 0, 10, {"stage": facts.stage}))
    else:
        reasons.append(Reason("phase_mismatch", 0, 10,
                              {"phase": facts.phase, "stage": facts.stage}))

    if STAGE_INDEX[FunnelStage.NEEDS] <= step and not signed:
        s_p = spin.get("S", 0) + spin.get("P", 0)
        i, n = spin.get("I", 0), spin.get("N", 0)
        points = (3 if s_p else 0) + (7 if i else 0) + (5 if n else 0)
        counts = {"s": spin.get("S", 0), "p": spin.get("P", 0), "i": i, "n": n}
        if not (s_p or i or n):
            code = "spin_none"
        elif not i:
            code = "spin_no_implication"
        elif not n:
            code = "spin_no_need_payoff"
        else:
            code = "spin_ok"
        reasons.append(Reason(code, points, 15, counts))

    if STAGE_INDEX[FunnelStage.VALUE] <= step and not signed:
        reasons.append(Reason("signals_seen" if signals else "signals_none",
                              10 if signals else 0, 10, {"count": signals}))

    days = idle_days(facts, now)
    limit = thresholds.get(facts.stage, DEFAULT_STALLED_DAYS.get(facts.stage, 21))
    if days > limit:
        reasons.append(Reason("activity_stalled", 0, 10, {"days": days, "limit": limit}))
    elif days * 2 > limit:
        reasons.append(Reason("activity_idle", 5, 10, {"days": days, "limit": limit}))
    else:
        reasons.append(Reason("activity_recent", 10, 10, {"days": days, "limit": limit}))

    if not facts.next_step:
        reasons.append(Reason("next_none", 0, 10))
    elif facts.next_step_due is None:
        reasons.append(Reason("next_no_date", 5, 10))
    elif facts.next_step_due < today:
        reasons.append(Reason("next_overdue", 2, 10,
                              {"days": (today - facts.next_step_due).days,
                               "due": facts.next_step_due.isoformat()}))
    else:
        reasons.append(Reason("next_ok", 10, 10, {"due": facts.next_step_due.isoformat()}))

    got = sum(r.points for r in reasons)
    total = sum(r.max_points for r in reasons)
    ordered = sorted(reasons, key=lambda r: (r.ok, -(r.max_points - r.points)))
    return Health(facts.id, round(100 * got / total) if total else 0, tuple(ordered))


_OPP_COLUMNS = (Opportunity.id, Opportunity.account_id, Opportunity.stage, Opportunity.phase,
                Opportunity.qualification, Opportunity.next_step, Opportunity.next_step_due,
                Opportunity.last_activity_at, Opportunity.stage_entered_at,
                Opportunity.created_at)


def health_of(session: Session, org_id: uuid.UUID, scope: Select[Any], *, now: datetime,
              today: date | None = None,
              thresholds: Mapping[str, int] | None = None) -> dict[uuid.UUID, Health]:
    """Health of the open opportunities whose ids `scope` (a SELECT of ids) returns.

    A handful of queries whatever the number of opportunities. `today` is the asker's
    calendar day (defaults to `now`'s date)."""
    ids = list(session.execute(scope).scalars())
    return health_of_ids(session, org_id, ids, now=now, today=today, thresholds=thresholds)


_SIGNAL = "signal"  # the kind of the signal counts next to SPIN kinds (S, P, I, N)
_CHUNK = 5000  # ids per IN list (SQLite allows 32,766 parameters)


def _chunks(ids: list[uuid.UUID]) -> Iterable[list[uuid.UUID]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start:start + _CHUNK]


def health_of_ids(session: Session, org_id: uuid.UUID, ids: Iterable[uuid.UUID], *,
                  now: datetime, today: date | None = None,
                  thresholds: Mapping[str, int] | None = None) -> dict[uuid.UUID, Health]:
    """Health of the open opportunities among `ids`: the opportunities, their accounts'
    contacts, and SPIN and signal counts in one grouped query each (per 5,000 ids).

    The queries go by primary and foreign keys only (the ids already belong to the org), so
    the database reads exactly those rows."""
    wanted = sorted(set(ids))
    opps: list[OppFacts] = []
    for chunk in _chunks(wanted):
        for row in session.execute(select(Opportunity.org_id, *_OPP_COLUMNS)
                                   .where(Opportunity.id.in_(chunk))):
            if row[0] == org_id and row[3] in OPEN_STAGES:
                opps.append(OppFacts(*row[1:]))
    return _health(session, org_id, opps, None, now=now, today=today, thresholds=thresholds)


def health_of_rows(session: Session, org_id: uuid.UUID, opportunities: Iterable[Opportunity],
                   *, contacts: Iterable[Contact] | None = None, now: datetime,
                   today: date | None = None, thresholds: Mapping[str, int] | None = None
                   ) -> dict[uuid.UUID, Health]:
    """Like `health_of_ids` for opportunities a caller has loaded already (a card, a list),
    and with `contacts` every contact of their accounts when the caller has those too: the
    same answer with fewer queries."""
    opps = [OppFacts(*(getattr(o, c.key) for c in _OPP_COLUMNS)) for o in opportunities
            if o.org_id == org_id and o.stage in OPEN_STAGES]
    known = None
    if contacts is not None:
        known = defaultdict(list)
        for c in contacts:
            known[c.account_id].append(ContactFacts(c.name, tuple(c.buying_roles or ()),
                                                    c.relationship_stage, c.insider_level))
    return _health(session, org_id, opps, known, now=now, today=today, thresholds=thresholds)


def _health(session: Session, org_id: uuid.UUID, opps: list[OppFacts],
            known: Mapping[uuid.UUID, list[ContactFacts]] | None, *, now: datetime,
            today: date | None, thresholds: Mapping[str, int] | None
            ) -> dict[uuid.UUID, Health]:
    if not opps:
        return {}
    open_ids = [o.id for o in opps]
    contacts: Mapping[uuid.UUID, list[ContactFacts]]
    if known is not None:
        contacts = known
    else:
        found: dict[uuid.UUID, list[ContactFacts]] = defaultdict(list)
        for chunk in _chunks(sorted({o.account_id for o in opps})):
            for account_id, name, roles, rel, insider in session.execute(
                    select(Contact.account_id, Contact.name, Contact.buying_roles,
                           Contact.relationship_stage, Contact.insider_level)
                    .where(Contact.account_id.in_(chunk))):
                found[account_id].append(ContactFacts(name, tuple(roles or ()), rel, insider))
        contacts = found
    spin: dict[uuid.UUID, dict[str, int]] = defaultdict(dict)
    signals: dict[uuid.UUID, int] = {}
    for chunk in _chunks(open_ids):
        # SPIN counts by kind and signal counts in one round trip
        spins = (select(SpinEntry.opportunity_id, SpinEntry.kind, func.count())
                 .where(SpinEntry.opportunity_id.in_(chunk))
                 .group_by(SpinEntry.opportunity_id, SpinEntry.kind))
        seen = (select(BuyingSignal.opportunity_id, literal(_SIGNAL, String), func.count())
                .where(BuyingSignal.opportunity_id.in_(chunk))
                .group_by(BuyingSignal.opportunity_id))
        for opp_id, kind, count in session.execute(union_all(spins, seen)):
            if kind == _SIGNAL:
                signals[opp_id] = int(count)
            else:
                spin[opp_id][kind] = int(count)
    limits = thresholds if thresholds is not None else stalled_days(session, org_id)
    day = today or now.date()
    return {o.id: evaluate(o, contacts.get(o.account_id, ()), spin.get(o.id, {}),
                           signals.get(o.id, 0), now=now, today=day, thresholds=limits)
            for o in opps}
