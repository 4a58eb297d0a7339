"""Coaching analytics per rep and for the team over a period, so a manager sees whom to coach
on what: the SPIN question mix, step conversion and time per step, where opportunities stall,
and collection speed (days sales outstanding).

Where the figures come from:
- SPIN mix: `spin_entries` asked in the period, credited to the rep who logged them (the
  opportunity's owner when no user is recorded).
- Step conversion and time per step: the funnel history in the activity log — activities of kind
  `stage_change` whose note starts with `<from> -> <to>` (stage codes; `→` works too), as the
  method dialogs and the demo record them. A forward move out of a step counts as converted, a
  move to `lost` or `keep_in_touch` as dropped. Time in a step runs from entering it (the
  previous change, or the opportunity's creation) to leaving it.
- Stalls: open opportunities at the end of the period, idle longer than their step allows
  (store.health.stalled_days), and their median days in the current step.
- DSO: receivables outstanding at the end of the period (invoice amounts less payments, written
  off excluded) / invoiced in the period × days in the period; and the mean days from issue to
  full payment of invoices settled in the period. Amounts are added as recorded: one currency
  per org is assumed.

Each figure is a few grouped queries and one pass in Python, whatever the team size.
"""

from __future__ import annotations

import re
import statistics
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from store.enums import OPEN_STAGES, FunnelStage, InvoiceStatus
from store.funnel import FUNNEL
from store.health import DEFAULT_STALLED_DAYS, STAGE_INDEX, STAGE_ORDER, stalled_days
from store.models import Account, Activity, Invoice, Opportunity, Payment, SpinEntry, User

SPIN_KINDS = ("S", "P", "I", "N")
_CHANGE = re.compile(r"^\s*([a-z_]+)\s*(?:->|→)\s*([a-z_]+)")
_DROPPED = frozenset({FunnelStage.LOST, FunnelStage.KEEP_IN_TOUCH})
# the funnel's order with its way out at the bottom: collection -> won is a step converted
_FUNNEL_INDEX = {stage: i for i, stage in enumerate(FUNNEL)}


@dataclass(frozen=True)
class SpinMix:
    """How many Situation, Problem, Implication and Need-payoff questions were asked."""

    s: int = 0
    p: int = 0
    i: int = 0
    n: int = 0

    @property
    def total(self) -> int:
        return self.s + self.p + self.i + self.n

    def count(self, kind: str) -> int:
        return int(getattr(self, kind.lower()))

    def share(self, kind: str) -> float:
        return self.count(kind) / self.total if self.total else 0.0

    @property
    def feedback(self) -> str:
        """The coaching remark on the mix: a code of the catalogs' `spin.fb.*` texts."""
        if not self.total:
            return "none"
        if not self.i:
            return "no_implication"
        if not self.n:
            return "no_need_payoff"
        if self.share("S") > 0.5:
            return "situation_heavy"
        return "balanced"

    def __add__(self, other: SpinMix) -> SpinMix:
        return SpinMix(self.s + other.s, self.p + other.p, self.i + other.i, self.n + other.n)


def _mix(counts: Mapping[str, int]) -> SpinMix:
    return SpinMix(*(int(counts.get(k, 0)) for k in SPIN_KINDS))


def _spin_rep() -> ColumnElement[uuid.UUID]:
    return func.coalesce(SpinEntry.user_id, Opportunity.owner_id)


def spin_mix(session: Session, org_id: uuid.UUID, *, opportunity_id: uuid.UUID | None = None,
             user_ids: Iterable[uuid.UUID] | None = None, start: datetime | None = None,
             end: datetime | None = None) -> SpinMix:
    """The SPIN mix of one opportunity, or of some reps, optionally within [start, end)."""
    query = (select(SpinEntry.kind, func.count())
             .join(Opportunity, Opportunity.id == SpinEntry.opportunity_id)
             .where(SpinEntry.org_id == org_id).group_by(SpinEntry.kind))
    if opportunity_id is not None:
        query = query.where(SpinEntry.opportunity_id == opportunity_id)
    if user_ids is not None:
        query = query.where(_spin_rep().in_(sorted(set(user_ids))))
    if start is not None:
        query = query.where(SpinEntry.asked_at >= start)
    if end is not None:
        query = query.where(SpinEntry.asked_at < end)
    return _mix({kind: int(count) for kind, count in session.execute(query)})


def spin_mix_by_rep(session: Session, org_id: uuid.UUID, user_ids: Iterable[uuid.UUID], *,
                    start: datetime, end: datetime) -> dict[uuid.UUID, SpinMix]:
    rep = _spin_rep()
    counts: dict[uuid.UUID, dict[str, int]] = defaultdict(dict)
    for user_id, kind, count in session.execute(
            select(rep, SpinEntry.kind, func.count())
            .join(Opportunity, Opportunity.id == SpinEntry.opportunity_id)
            .where(SpinEntry.org_id == org_id, rep.in_(sorted(set(user_ids))),
                   SpinEntry.asked_at >= start, SpinEntry.asked_at < end)
            .group_by(rep, SpinEntry.kind)):
        counts[user_id][kind] = int(count)
    return {u: _mix(c) for u, c in counts.items()}


@dataclass
class StepFlow:
    """Moves out of one funnel step in the period, and the days spent in it before moving."""

    advanced: int = 0
    dropped: int = 0
    days: list[float] = field(default_factory=list)

    @property
    def exits(self) -> int:
        return self.advanced + self.dropped

    @property
    def conversion(self) -> float | None:
        return self.advanced / self.exits if self.exits else None

    @property
    def mean_days(self) -> float | None:
        return sum(self.days) / len(self.days) if self.days else None


@dataclass
class RepStats:
    user_id: uuid.UUID | None
    name: str
    spin: SpinMix = field(default_factory=SpinMix)
    steps: dict[str, StepFlow] = field(default_factory=dict)
    open_by_step: dict[str, int] = field(default_factory=dict)
    stalled_by_step: dict[str, int] = field(default_factory=dict)
    days_in_step: dict[str, list[int]] = field(default_factory=dict)
    receivables: Decimal = Decimal(0)
    invoiced: Decimal = Decimal(0)
    period_days: int = 0
    days_to_pay: list[int] = field(default_factory=list)

    def step(self, stage: str) -> StepFlow:
        return self.steps.setdefault(stage, StepFlow())

    @property
    def dso(self) -> float | None:
        if not self.invoiced:
            return None
        return float(self.receivables / self.invoiced) * self.period_days

    @property
    def mean_days_to_pay(self) -> float | None:
        return sum(self.days_to_pay) / len(self.days_to_pay) if self.days_to_pay else None

    @property
    def open_total(self) -> int:
        return sum(self.open_by_step.values())

    @property
    def stalled_total(self) -> int:
        return sum(self.stalled_by_step.values())

    @property
    def stall_step(self) -> str | None:
        """The step where most of this rep's opportunities are stalled."""
        worst = [(n, -STAGE_INDEX.get(s, 0), s) for s, n in self.stalled_by_step.items() if n]
        return max(worst)[2] if worst else None

    def median_days_in_step(self, stage: str) -> float | None:
        values = self.days_in_step.get(stage)
        return float(statistics.median(values)) if values else None

    def absorb(self, other: RepStats) -> None:
        """Add another rep's figures into this one (the team total)."""
        self.spin = self.spin + other.spin
        for stage, flow in other.steps.items():
            mine = self.step(stage)
            mine.advanced += flow.advanced
            mine.dropped += flow.dropped
            mine.days.extend(flow.days)
        for stage, n in other.open_by_step.items():
            self.open_by_step[stage] = self.open_by_step.get(stage, 0) + n
        for stage, n in other.stalled_by_step.items():
            self.stalled_by_step[stage] = self.stalled_by_step.get(stage, 0) + n
        for stage, days in other.days_in_step.items():
            self.days_in_step.setdefault(stage, []).extend(days)
        self.receivables += other.receivables
        self.invoiced += other.invoiced
        self.days_to_pay.extend(other.days_to_pay)


@dataclass(frozen=True)
class Advice:
    """A coaching point for one rep: the catalog text `coach.<code>` with its parameters."""

    code: str
    params: Mapping[str, Any]


@dataclass
class TeamReport:
    start: datetime
    end: datetime
    reps: list[RepStats]
    team: RepStats
    advice: dict[uuid.UUID, list[Advice]]


def _day(value: datetime | date) -> date:
    return value.date() if isinstance(value, datetime) else value


def _end_day(end: datetime | date) -> date:
    """The first day after a period ending at `end` (exclusive): a period that ends now takes
    in what is dated today (a payment received this morning), one that ends at midnight does
    not take in the day that begins."""
    if isinstance(end, datetime):
        return (end - timedelta(microseconds=1)).date() + timedelta(days=1)
    return end


def team_report(session: Session, org_id: uuid.UUID, user_ids: Iterable[uuid.UUID], *,
                start: datetime, end: datetime, now: datetime | None = None) -> TeamReport:
    """Every figure for each of `user_ids` and for them together, over [start, end)."""
    users = sorted(set(user_ids))
    now = now or end
    names = {user_id: name for user_id, name in session.execute(
        select(User.id, User.display_name).where(User.id.in_(users)))}
    stats = {u: RepStats(u, names.get(u, str(u)), period_days=max(1, (end - start).days))
             for u in users}

    for user_id, mix in spin_mix_by_rep(session, org_id, users, start=start, end=end).items():
        stats[user_id].spin = mix

    # funnel history: every stage change of these reps' opportunities up to the period's end
    created: dict[uuid.UUID, tuple[uuid.UUID, datetime]] = {}
    for opp_id, owner, created_at in session.execute(
            select(Opportunity.id, Opportunity.owner_id, Opportunity.created_at)
            .where(Opportunity.org_id == org_id, Opportunity.owner_id.in_(users))):
        created[opp_id] = (owner, created_at)
    entered: dict[uuid.UUID, datetime] = {}
    for moved_id, occurred_at, note in session.execute(
            select(Activity.opportunity_id, Activity.occurred_at, Activity.note)
            .join(Opportunity, Opportunity.id == Activity.opportunity_id)
            .where(Activity.org_id == org_id, Activity.kind == "stage_change",
                   Opportunity.owner_id.in_(users), Activity.occurred_at < end)
            .order_by(Activity.opportunity_id, Activity.occurred_at)):
        move = _CHANGE.match(note or "")
        if move is None or moved_id is None or moved_id not in created:
            continue
        source, target = move.groups()
        since = entered.get(moved_id, created[moved_id][1])
        entered[moved_id] = occurred_at
        if occurred_at < start or source not in STAGE_INDEX:
            continue
        if target in _DROPPED:
            dropped = True
        elif _FUNNEL_INDEX.get(target, -1) > _FUNNEL_INDEX[source]:
            dropped = False  # forward, into won (everything collected) too
        else:
            continue  # a move back is neither (and leaves no empty "— of 0" step behind)
        flow = stats[created[moved_id][0]].step(source)
        if dropped:
            flow.dropped += 1
        else:
            flow.advanced += 1
        flow.days.append(round((occurred_at - since).total_seconds() / 86400, 1))

    # where they stall: open opportunities now
    limits = stalled_days(session, org_id)
    for owner, stage, last, entered_at, created_at in session.execute(
            select(Opportunity.owner_id, Opportunity.stage, Opportunity.last_activity_at,
                   Opportunity.stage_entered_at, Opportunity.created_at)
            .where(Opportunity.org_id == org_id, Opportunity.owner_id.in_(users),
                   Opportunity.stage.in_(sorted(OPEN_STAGES)))):
        rep = stats[owner]
        rep.open_by_step[stage] = rep.open_by_step.get(stage, 0) + 1
        since = entered_at or created_at
        rep.days_in_step.setdefault(stage, []).append(max(0, (now - since).days))
        idle = (now - (last or since)).days
        if idle > limits.get(stage, DEFAULT_STALLED_DAYS.get(stage, 21)):
            rep.stalled_by_step[stage] = rep.stalled_by_step.get(stage, 0) + 1

    _receivables(session, org_id, users, stats, start=start, end=end)

    team = RepStats(None, "team", period_days=max(1, (end - start).days))
    for rep in stats.values():
        team.absorb(rep)
    ordered = sorted(stats.values(), key=lambda r: r.name)
    return TeamReport(start, end, ordered, team,
                      {r.user_id: advise(r, team) for r in ordered if r.user_id is not None})


def _receivables(session: Session, org_id: uuid.UUID, users: list[uuid.UUID],
                 stats: dict[uuid.UUID, RepStats], *, start: datetime, end: datetime) -> None:
    first, last = _day(start), _end_day(end)  # [first, last)
    owner = func.coalesce(Opportunity.owner_id, Account.owner_id)
    paid: dict[uuid.UUID, tuple[Decimal, date | None]] = {}
    for invoice_id, total, last_paid in session.execute(
            select(Payment.invoice_id, func.sum(Payment.amount), func.max(Payment.paid_on))
            .join(Invoice, Invoice.id == Payment.invoice_id)
            .join(Account, Account.id == Invoice.account_id)
            .outerjoin(Opportunity, Opportunity.id == Invoice.opportunity_id)
            .where(Payment.org_id == org_id, owner.in_(users), Payment.paid_on < last)
            .group_by(Payment.invoice_id)):
        paid[invoice_id] = (Decimal(str(total or 0)), last_paid)
    for invoice_id, rep, amount, issued, status, closed in session.execute(
            select(Invoice.id, owner, Invoice.amount, Invoice.issued_on, Invoice.status,
                   Invoice.closed_on)
            .select_from(Invoice)
            .join(Account, Account.id == Invoice.account_id)
            .outerjoin(Opportunity, Opportunity.id == Invoice.opportunity_id)
            .where(Invoice.org_id == org_id, owner.in_(users), Invoice.issued_on < last)):
        stat = stats.get(rep)
        if stat is None:
            continue
        amount = Decimal(str(amount))
        if issued >= first:
            stat.invoiced += amount
        got, latest = paid.get(invoice_id, (Decimal(0), None))
        written_off = status == InvoiceStatus.WRITTEN_OFF and (closed is None or closed < last)
        if not written_off:
            stat.receivables += max(Decimal(0), amount - got)
        if got >= amount and latest is not None and first <= latest < last:
            stat.days_to_pay.append((latest - issued).days)


def _pct(value: float | None) -> int | None:
    return None if value is None else round(100 * value)


def advise(rep: RepStats, team: RepStats) -> list[Advice]:
    """What to coach this rep on, compared with the team (most telling first)."""
    out: list[Advice] = []
    if team.spin.total and not rep.spin.total and rep.open_total:
        out.append(Advice("no_spin", {"team": team.spin.total}))
    elif rep.spin.total:
        rep_i, team_i = rep.spin.share("I"), team.spin.share("I")
        if rep_i + 0.10 < team_i or (not rep.spin.i and rep.spin.total >= 3):
            out.append(Advice("implication", {"rep_pct": _pct(rep_i), "team_pct": _pct(team_i)}))
        if not rep.spin.n and team.spin.n:
            out.append(Advice("need_payoff", {"team_pct": _pct(team.spin.share("N"))}))
    for stage in STAGE_ORDER:
        mine, theirs = rep.steps.get(stage), team.steps.get(stage)
        if mine is None or theirs is None or mine.exits < 2:
            continue
        rep_c, team_c = mine.conversion, theirs.conversion
        if rep_c is not None and team_c is not None and rep_c + 0.20 < team_c:
            out.append(Advice("conversion", {"stage": stage, "rep_pct": _pct(rep_c),
                                             "team_pct": _pct(team_c)}))
    if rep.open_total and rep.stalled_total:
        rep_s = rep.stalled_total / rep.open_total
        team_s = team.stalled_total / team.open_total if team.open_total else 0.0
        if rep_s >= team_s + 0.15 or rep_s >= 0.5:
            out.append(Advice("stalled", {"stage": rep.stall_step or "",
                                          "count": rep.stalled_total,
                                          "rep_pct": _pct(rep_s), "team_pct": _pct(team_s)}))
    rep_dso, team_dso = rep.dso, team.dso
    if rep_dso is not None and team_dso is not None and rep_dso > team_dso * 1.25 + 5:
        out.append(Advice("dso", {"rep": round(rep_dso), "team": round(team_dso)}))
    return out
