"""The nudge pass: find what is stalled or overdue, raise each nudge once, post it to the team.

Every rule is one SQL query per org on indexed columns (bot/rules.yaml for the thresholds,
`orgs.settings` for an org's own), so a pass costs what is due, not the size of the tables:

- `stalled`   an open opportunity with no activity for longer than its stage allows
              (period: the day of the last activity, and one more per `stalled_repeat_days`)
- `next_step` its recorded next step is past due (period: the due date)
- `overstay`  in one stage far longer than the team's usual time there (period: the day it
              entered the stage); the usual time is refreshed daily into `stage_norms`
- `overdue`   an open invoice past due whose rung of the collection ladder is not taken yet
              (period: the rung)
- `followup`  the last collection action's follow-up date has passed (period: that date)

A nudge is a row in `nudges`, unique per (subject, rule, period): inserting it is what decides
that it is new, so two passes or two processes never raise it twice. Subjects with a snoozed
nudge stay quiet until the snooze ends; closed opportunities and paid invoices are not scanned.
Nothing is raised outside the org's working hours and days or on its holidays.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, exists, func, or_, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.delivery import Target
from bot.outbox import Post, enqueue
from bot.rules import FUNNEL, LADDER, Rules, zone
from dialogs.messages import Mention, Option, Outbound
from dialogs.render import Renderer
from store.enums import InvoiceStatus, NudgeStatus, SubjectType
from store.funnel import money_text, step_label
from store.models import (
    Account,
    CollectionAction,
    Identity,
    Invoice,
    Nudge,
    Opportunity,
    Org,
    Payment,
    StageNorm,
    TeamChannel,
    User,
)

_nudges = cast(Table, Nudge.__table__)
_norms = cast(Table, StageNorm.__table__)

_PG_RAISE = text("""
INSERT INTO nudges (id, org_id, user_id, subject_type, subject_id, rule, period, status,
                    created_at)
SELECT gen_random_uuid(), :org_id, user_id, subject_type, subject_id, rule, period, :status,
       :now
FROM unnest(CAST(:users AS uuid[]), CAST(:types AS varchar[]), CAST(:subjects AS uuid[]),
            CAST(:rules AS varchar[]), CAST(:periods AS varchar[]))
     AS t(user_id, subject_type, subject_id, rule, period)
ON CONFLICT (org_id, subject_type, subject_id, rule, period) DO NOTHING
RETURNING id, subject_type, subject_id, rule, period
""")

_PG_RAISED = text("""
SELECT n.subject_id, n.rule, n.period
FROM unnest(CAST(:ids AS uuid[])) AS u(id)
JOIN nudges n ON n.org_id = :org_id AND n.subject_type = :type AND n.subject_id = u.id
""")

OPP = SubjectType.OPPORTUNITY.value
INV = SubjectType.INVOICE.value


@dataclass(frozen=True)
class Due:
    """A nudge a rule wants raised, with what its message shows."""

    subject_type: str
    subject_id: uuid.UUID
    rule: str
    period: str
    owner_id: uuid.UUID
    facts: dict[str, Any]
    urgency: float = 0.0


@dataclass
class PassResult:
    """What one pass did: per org, the nudges raised and the posts queued (or printed)."""

    raised: list[tuple[uuid.UUID, Due]] = field(default_factory=list)
    posts: list[Post] = field(default_factory=list)
    skipped_orgs: list[str] = field(default_factory=list)  # outside working time
    no_channel: list[str] = field(default_factory=list)    # no team channel bound
    # seconds spent per phase (scan: the rules' queries; raise: inserting the nudges;
    # render: building the posts; queue: writing them to the outbox), for benchmarks and logs
    timings: dict[str, float] = field(default_factory=dict)

    def timed(self, phase: str, started: float) -> float:
        now = time.perf_counter()
        self.timings[phase] = self.timings.get(phase, 0.0) + now - started
        return now


def _epoch(column: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.extract("epoch", column)
    return (func.julianday(column) - 2440587.5) * 86400.0


def _not_snoozed(subject_type: str, subject_id: Any, org_id: uuid.UUID,
                 now: datetime) -> ColumnElement[bool]:
    return ~exists().where(_nudges.c.org_id == org_id, _nudges.c.subject_type == subject_type,
                           _nudges.c.subject_id == subject_id, _nudges.c.snoozed_until > now)


# ---- the rules as queries ---------------------------------------------------------------------


def _opp_columns() -> tuple[Any, ...]:
    return (Opportunity.id, Opportunity.owner_id, Opportunity.name, Opportunity.stage,
            Opportunity.amount, Opportunity.currency, Opportunity.next_step,
            Opportunity.next_step_due, Opportunity.last_activity_at,
            Opportunity.stage_entered_at, Opportunity.created_at, Account.name)


def _opp_facts(row: Any, now: datetime) -> dict[str, Any]:
    anchor = row.last_activity_at or row.stage_entered_at or row.created_at
    return {
        "opportunity": row.name, "account": row[11], "stage": row.stage,
        "amount": row.amount, "currency": row.currency or "",
        "next_step": row.next_step, "next_step_due": row.next_step_due,
        "idle_days": max(0, (now - anchor).days) if anchor else None,
        "stage_days": max(0, (now - row.stage_entered_at).days) if row.stage_entered_at else None,
        "last_activity": anchor,
    }


def stalled(session: Session, org_id: uuid.UUID, rules: Rules, now: datetime) -> list[Due]:
    # one query for every stage, each with its own limit: a range on the (org_id, stage,
    # last_activity_at) index per stage, OR-ed (a BitmapOr on PostgreSQL)
    per_stage = []
    for stage in FUNNEL:
        cutoff = now - timedelta(days=rules.stalled_days[stage])
        per_stage.append(and_(Opportunity.stage == stage,
                              or_(Opportunity.last_activity_at < cutoff,
                                  and_(Opportunity.last_activity_at.is_(None),
                                       Opportunity.stage_entered_at < cutoff))))
    rows = session.execute(
        select(*_opp_columns()).join(Account, Account.id == Opportunity.account_id)
        .where(Opportunity.org_id == org_id, or_(*per_stage),
               _not_snoozed(OPP, Opportunity.id, org_id, now))
    ).all()
    out: list[Due] = []
    for row in rows:
        stage = row.stage
        days = rules.stalled_days[stage]
        facts = _opp_facts(row, now)
        anchor: datetime = facts["last_activity"]
        repeat = max(0, (now - anchor).days - days) // rules.stalled_repeat_days
        period = f"{anchor.date().isoformat()}+{repeat}"
        facts.update(limit_days=days)
        urgency = facts["idle_days"] / max(days, 1) * (1 + FUNNEL.index(stage) / 4)
        out.append(Due(OPP, row.id, "stalled", period, row.owner_id, facts, urgency))
    return out


def next_step_due(session: Session, org_id: uuid.UUID, today: date,
                  now: datetime) -> list[Due]:
    rows = session.execute(
        select(*_opp_columns()).join(Account, Account.id == Opportunity.account_id)
        .where(Opportunity.org_id == org_id, Opportunity.next_step_due < today,
               Opportunity.stage.in_(FUNNEL),
               _not_snoozed(OPP, Opportunity.id, org_id, now))
    ).all()
    out = []
    for row in rows:
        facts = _opp_facts(row, now)
        late = (today - row.next_step_due).days
        facts.update(late_days=late)
        out.append(Due(OPP, row.id, "next_step", row.next_step_due.isoformat(), row.owner_id,
                       facts, 1.0 + late / 7))
    return out


def usual_days(session: Session, org_id: uuid.UUID, rules: Rules,
               now: datetime) -> dict[str, float]:
    """The team's usual days in each stage: refreshed once a day into `stage_norms` (one
    aggregate over the org's open opportunities), read from there otherwise."""
    rows = {r.stage: r for r in session.execute(
        select(_norms.c.stage, _norms.c.usual_days, _norms.c.sample, _norms.c.computed_at)
        .where(_norms.c.org_id == org_id))}
    fresh = len(rows) == len(FUNNEL) and all(
        r.computed_at > now - timedelta(days=1) for r in rows.values())
    if not fresh:
        refresh_norms(session, org_id, now)
        rows = {r.stage: r for r in session.execute(
            select(_norms.c.stage, _norms.c.usual_days, _norms.c.sample, _norms.c.computed_at)
            .where(_norms.c.org_id == org_id))}
    out: dict[str, float] = {}
    for stage in FUNNEL:
        row = rows.get(stage)
        if row is not None and row.sample >= rules.overstay_min_sample:
            out[stage] = float(row.usual_days)
        else:
            out[stage] = float(rules.usual_days[stage])
    return out


def refresh_norms(session: Session, org_id: uuid.UUID, now: datetime) -> None:
    dialect = session.get_bind().dialect.name
    entered = _epoch(Opportunity.stage_entered_at, dialect)
    stats = {stage: (count, avg) for stage, count, avg in session.execute(
        select(Opportunity.stage, func.count(), func.avg(entered))
        .where(Opportunity.org_id == org_id, Opportunity.stage.in_(FUNNEL),
               Opportunity.stage_entered_at.is_not(None))
        .group_by(Opportunity.stage))}
    now_epoch = now.timestamp()
    values = []
    for stage in FUNNEL:
        count, avg = stats.get(stage, (0, None))
        usual = Decimal(0) if avg is None else Decimal(
            max(0.0, (now_epoch - float(avg)) / 86400)).quantize(Decimal("0.01"))
        values.append({"id": uuid.uuid5(org_id, f"norm:{stage}"), "org_id": org_id,
                       "stage": stage, "usual_days": usual, "sample": int(count),
                       "computed_at": now})
    stmt: Any = (pg_insert(_norms) if dialect == "postgresql" else sqlite_insert(_norms))
    stmt = stmt.values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["org_id", "stage"],
        set_={"usual_days": stmt.excluded.usual_days, "sample": stmt.excluded.sample,
              "computed_at": stmt.excluded.computed_at})
    session.execute(stmt)


def overstay(session: Session, org_id: uuid.UUID, rules: Rules, now: datetime) -> list[Due]:
    norms = usual_days(session, org_id, rules, now)
    limits = {stage: max(float(rules.overstay_min_days), rules.overstay_factor * norms[stage])
              for stage in FUNNEL}
    rows = session.execute(
        select(*_opp_columns()).join(Account, Account.id == Opportunity.account_id)
        .where(Opportunity.org_id == org_id,
               or_(*(and_(Opportunity.stage == stage,
                          Opportunity.stage_entered_at < now - timedelta(days=limit))
                     for stage, limit in limits.items())),
               _not_snoozed(OPP, Opportunity.id, org_id, now))
    ).all()
    out: list[Due] = []
    for row in rows:
        stage, limit = row.stage, limits[row.stage]
        facts = _opp_facts(row, now)
        facts.update(usual_days=round(norms[stage]))
        out.append(Due(OPP, row.id, "overstay", row.stage_entered_at.date().isoformat(),
                       row.owner_id, facts, facts["stage_days"] / max(limit, 1)))
    return out


def overdue(session: Session, org_id: uuid.UUID, rules: Rules, today: date,
            now: datetime) -> list[Due]:
    last = (select(CollectionAction.rung, CollectionAction.done_at, CollectionAction.next_due)
            .where(CollectionAction.invoice_id == Invoice.id)
            .order_by(CollectionAction.done_at.desc(), CollectionAction.id.desc())
            .limit(1).correlate(Invoice))
    paid = (select(func.coalesce(func.sum(Payment.amount), 0))
            .where(Payment.invoice_id == Invoice.id).correlate(Invoice).scalar_subquery())
    rows = session.execute(
        select(Invoice.id, Invoice.number, Invoice.amount, Invoice.currency, Invoice.due_on,
               Account.name, Account.owner_id, paid.label("paid"),
               last.with_only_columns(CollectionAction.rung).scalar_subquery().label("rung"),
               last.with_only_columns(CollectionAction.done_at).scalar_subquery()
               .label("done_at"),
               last.with_only_columns(CollectionAction.next_due).scalar_subquery()
               .label("next_due"))
        .join(Account, Account.id == Invoice.account_id)
        .where(Invoice.org_id == org_id, Invoice.status == InvoiceStatus.OPEN,
               Invoice.due_on < today, _not_snoozed(INV, Invoice.id, org_id, now))
    ).all()
    names = [rung for rung, _days in rules.ladder_days]
    out: list[Due] = []
    for row in rows:
        outstanding = row.amount - Decimal(str(row.paid or 0)).quantize(Decimal("0.01"))
        if outstanding <= 0:
            continue
        days = (today - row.due_on).days
        due_index = rules.rung_due(days, outstanding)
        done_index = _rung_index(row.rung, names)
        next_due = row.next_due
        if isinstance(next_due, str):  # pragma: no cover - SQLite via a subquery
            next_due = date.fromisoformat(next_due)
        done_at = row.done_at
        if isinstance(done_at, str):  # SQLite hands back a subquery's datetime as text
            done_at = datetime.fromisoformat(done_at)
        facts = {
            "invoice": row.number, "account": row.name, "amount": outstanding,
            "currency": row.currency, "due_on": row.due_on, "days_overdue": days,
            "bucket": rules.bucket_label(rules.bucket(days)), "last_rung": row.rung,
            "last_done": done_at, "large": outstanding >= rules.large_amount,
        }
        urgency = days / 15 * (2 if outstanding >= rules.large_amount else 1)
        if due_index > done_index and due_index >= 0:
            facts["next_rung"] = names[due_index]
            out.append(Due(INV, row.id, "overdue", names[due_index], row.owner_id, facts,
                           urgency))
        elif next_due is not None and next_due < today:
            facts["next_rung"] = names[min(done_index + 1, len(names) - 1)] if names else None
            facts["followup_due"] = next_due
            out.append(Due(INV, row.id, "followup", next_due.isoformat(), row.owner_id, facts,
                           urgency))
    return out


def _rung_index(rung: str | None, names: Sequence[str]) -> int:
    """Where the last action stands on this org's ladder (-1: nothing done yet)."""
    if rung is None:
        return -1
    if rung in names:
        return names.index(rung)
    if rung in LADDER:  # a rung this org left out of its ladder: the last one before it
        order = LADDER.index(rung)
        below = [i for i, name in enumerate(names) if LADDER.index(name) <= order]
        return below[-1] if below else -1
    return -1


def due_for_org(session: Session, org_id: uuid.UUID, rules: Rules, now: datetime,
                tz: str) -> list[Due]:
    today = now.astimezone(zone(tz)).date()
    return [*stalled(session, org_id, rules, now), *next_step_due(session, org_id, today, now),
            *overstay(session, org_id, rules, now),
            *overdue(session, org_id, rules, today, now)]


# ---- raising and posting ----------------------------------------------------------------------


def raise_nudges(session: Session, org_id: uuid.UUID, dues: Sequence[Due],
                 now: datetime) -> list[tuple[uuid.UUID, Due]]:
    """Insert the nudges; those already raised (same subject, rule, period) are skipped.
    Returns the new ones with their ids."""
    if not dues:
        return []
    dialect = session.get_bind().dialect.name
    by_key = {(d.subject_type, d.subject_id, d.rule, d.period): d for d in dues}
    # most of what is due was raised by an earlier pass: read those keys rather than have the
    # insert find each conflict (the unique constraint still decides, e.g. between processes)
    for subject_type in sorted({d.subject_type for d in dues}):
        subjects = sorted({d.subject_id for d in dues if d.subject_type == subject_type})
        found: list[Any] = []
        if dialect == "postgresql":  # one array parameter rather than thousands
            found = list(session.execute(_PG_RAISED, {"org_id": org_id, "type": subject_type,
                                                      "ids": subjects}))
        else:
            for start in range(0, len(subjects), 500):
                found += session.execute(
                    select(_nudges.c.subject_id, _nudges.c.rule, _nudges.c.period)
                    .where(_nudges.c.org_id == org_id, _nudges.c.subject_type == subject_type,
                           _nudges.c.subject_id.in_(subjects[start:start + 500]))).all()
        for rid, rule, period in found:
            by_key.pop((subject_type, rid, rule, period), None)
    if not by_key:
        return []
    raised: list[tuple[uuid.UUID, Due]] = []
    result: Any
    if dialect == "postgresql":
        # one statement for any number of rows: five arrays unnested in the server, which
        # also makes the ids (no per-row objects or parameters on this side)
        todo = list(by_key.values())
        result = session.execute(_PG_RAISE, {
            "org_id": org_id, "now": now, "status": NudgeStatus.PENDING.value,
            "users": [d.owner_id for d in todo], "types": [d.subject_type for d in todo],
            "subjects": [d.subject_id for d in todo], "rules": [d.rule for d in todo],
            "periods": [d.period for d in todo]})
    else:
        # one multi-row INSERT … ON CONFLICT DO NOTHING RETURNING per batch of rows
        # (SQLAlchemy's "insertmanyvalues")
        rows = [{"id": uuid.uuid4(), "org_id": org_id, "user_id": d.owner_id,
                 "subject_type": d.subject_type, "subject_id": d.subject_id, "rule": d.rule,
                 "period": d.period, "status": NudgeStatus.PENDING.value, "created_at": now}
                for d in by_key.values()]
        stmt = sqlite_insert(_nudges).on_conflict_do_nothing(
            index_elements=["org_id", "subject_type", "subject_id", "rule", "period"]
        ).returning(_nudges.c.id, _nudges.c.subject_type, _nudges.c.subject_id,
                    _nudges.c.rule, _nudges.c.period)
        result = session.execute(stmt, rows)
    for rid, stype, sid, rule, period in result.all():
        raised.append((rid, by_key[(stype, sid, rule, period)]))
    raised.sort(key=lambda item: -item[1].urgency)
    return raised


def _fmt_amount(amount: Decimal | None, currency: str | None) -> str:
    return "" if amount is None else money_text(amount, currency or "")


def render_nudge(renderer: Renderer, lang: str, items: Sequence[tuple[uuid.UUID, Due]],
                 owner_name: str, mentions: tuple[Mention, ...] = ()) -> Outbound:
    """One subject's message: every rule that fired for it in this pass, one set of buttons
    (they act on the subject: Done and Snooze quiet all its nudges). `mentions`: the owner,
    named `@owner_name` in the text, for the front end to ping."""
    nudge_id, due = items[0]
    facts: dict[str, Any] = {}
    for _id, other in reversed(items):
        facts.update(other.facts)
    facts["amount_text"] = _fmt_amount(facts.get("amount"), facts.get("currency"))
    rules = [other.rule for _id, other in items]
    template = "nudge_invoice.j2" if due.subject_type == INV else "nudge_opportunity.j2"
    text = renderer.template(template, lang, rule=due.rule, rules=rules, owner=owner_name,
                             f=facts, rungs=LADDER, nudge_id=str(nudge_id),
                             stage=lambda code: step_label(
                                 renderer.text(lang, f"jobs.stage.{code}"), code))
    t = renderer.text
    sid = str(nudge_id)
    options = (
        Option(f"/nudge done {sid}", str(t(lang, "jobs.btn.done"))),
        Option(f"/nudge snooze3 {sid}", str(t(lang, "jobs.btn.snooze3"))),
        Option(f"/nudge snooze7 {sid}", str(t(lang, "jobs.btn.snooze7"))),
        Option(f"/nudge open {sid}", str(t(lang, "jobs.btn.open"))),
    )
    return Outbound(text, kind="nudge", options=options, mentions=mentions)


def render_group(renderer: Renderer, lang: str,
                 subjects: Sequence[tuple[Sequence[tuple[uuid.UUID, Due]], str]], *,
                 total: int, mentions: tuple[Mention, ...] = ()) -> Outbound:
    lines = []
    for items, owner in subjects:
        due = items[0][1]
        lines.append({"rule": due.rule, "owner": owner, "f": due.facts,
                      "amount_text": _fmt_amount(due.facts.get("amount"),
                                                 due.facts.get("currency"))})
    return Outbound(renderer.template("nudge_group.j2", lang, items=lines, count=total,
                                      more=total - len(subjects)), kind="nudge_group",
                    mentions=mentions)


def by_subject(raised: Sequence[tuple[uuid.UUID, Due]]
               ) -> list[list[tuple[uuid.UUID, Due]]]:
    """The raised nudges per subject, most urgent subject first."""
    groups: dict[tuple[str, uuid.UUID], list[tuple[uuid.UUID, Due]]] = {}
    for item in raised:
        groups.setdefault((item[1].subject_type, item[1].subject_id), []).append(item)
    return sorted(groups.values(), key=lambda g: -max(d.urgency for _i, d in g))


def posts_for_org(session: Session, org: Any, rules: Rules, renderer: Renderer,
                  raised: Sequence[tuple[uuid.UUID, Due]]) -> list[Post]:
    """The team-channel posts announcing `raised`: one per subject, or, when more subjects
    than the group threshold, one grouped message with each subject in its thread."""
    if not raised:
        return []
    channels = session.execute(
        select(TeamChannel.platform, TeamChannel.channel_id)
        .where(TeamChannel.org_id == org.id, TeamChannel.active.is_(True))
        .order_by(TeamChannel.platform)).all()
    owner_ids = {due.owner_id for _id, due in raised}
    names = dict(session.execute(select(User.id, User.display_name)
                                 .where(User.id.in_(owner_ids))).all())
    idents: dict[tuple[str, uuid.UUID], str] = {}
    for platform, user_id, external in session.execute(
            select(Identity.platform, Identity.user_id, Identity.external_id)
            .where(Identity.user_id.in_(owner_ids))):
        idents[(platform, user_id)] = external
    lang = org.default_lang or "en"
    subjects = by_subject(raised)
    posts: list[Post] = []
    for platform, channel in channels:
        target = Target(org_key=org.external_id, kind="channel", key=channel)

        def mention_of(owner_id: uuid.UUID, platform: str = platform) -> tuple[Mention, ...]:
            key = idents.get((platform, owner_id))
            return (Mention(platform, key, names.get(owner_id, "?")),) if key else ()

        def post(items: list[tuple[uuid.UUID, Due]], thread_of: str | None,
                 platform: str = platform, channel: str = channel,
                 target: Target = target) -> Post:
            owner_id = items[0][1].owner_id
            owner = names.get(owner_id, "?")
            message = render_nudge(renderer, lang, items, owner, mention_of(owner_id))
            return Post(org_id=org.id, platform=platform, target=target, messages=(message,),
                        kind="nudge", dedupe_key=f"nudge:{items[0][0]}:{platform}:{channel}",
                        lang=lang, thread_of=thread_of,
                        nudge_ids=tuple(str(i) for i, _d in items))

        if len(subjects) > rules.group_threshold:
            # one message listing the most urgent, their details in its thread; the rest are
            # counted (they are raised, so never repeated, and the digest lists them)
            top = subjects[:rules.group_limit]
            group_key = f"nudges:{subjects[0][0][0]}:{platform}:{channel}"
            summary = [(items, names.get(items[0][1].owner_id, "?")) for items in top]
            mentions = tuple(dict.fromkeys(
                m for items in top for m in mention_of(items[0][1].owner_id)))
            posts.append(Post(org_id=org.id, platform=platform, target=target,
                              messages=(render_group(renderer, lang, summary,
                                                     total=len(subjects),
                                                     mentions=mentions),),
                              kind="nudge_group", dedupe_key=group_key, lang=lang))
            posts.extend(post(items, group_key) for items in top)
        else:
            posts.extend(post(items, None) for items in subjects)
    return posts


def run_pass(session: Session, renderer: Renderer, now: datetime,
             org_ids: Sequence[uuid.UUID] | None = None, *, queue: bool = True) -> PassResult:
    """One nudge pass over every org (or `org_ids`): raise what is due, queue the posts."""
    result = PassResult()
    query = select(Org.id, Org.external_id, Org.name, Org.tz, Org.default_lang, Org.settings)
    if org_ids is not None:
        query = query.where(Org.id.in_(org_ids))
    for org in session.execute(query.order_by(Org.name)).all():
        rules = Rules.for_org(org.settings)
        if not rules.is_working_time(now, org.tz):
            result.skipped_orgs.append(org.name)
            continue
        if session.scalar(select(TeamChannel.id).where(
                TeamChannel.org_id == org.id, TeamChannel.active.is_(True)).limit(1)) is None:
            # nowhere to post: raise nothing, so binding a channel later announces it all
            result.no_channel.append(org.name)
            continue
        t = time.perf_counter()
        dues = due_for_org(session, org.id, rules, now, org.tz)
        t = result.timed("scan", t)
        raised = raise_nudges(session, org.id, dues, now)
        t = result.timed("raise", t)
        posts = posts_for_org(session, org, rules, renderer, raised)
        t = result.timed("render", t)
        if queue:
            enqueue(session, posts, now)
            result.timed("queue", t)
        result.raised.extend(raised)
        result.posts.extend(posts)
    return result


def group_counts(raised: Sequence[tuple[uuid.UUID, Due]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for _id, due in raised:
        counts[due.rule] += 1
    return dict(counts)

