"""The daily digest: for each manager (and each rep who asked for one), at their local time.

Contents: the funnel by step (counts and amounts) with a funnel chart; what changed since
yesterday (advanced, won, lost, new); stalled opportunities; receivables by ageing bucket with
totals and the largest overdue; a coaching highlight per rep; the three most urgent actions;
and, for managers and admins, the deliveries that failed in the last day.

Scheduling: a recipient is due once per local calendar day, on their digest weekdays, from their
digest time on (`zoneinfo`, so a daylight-saving change neither skips nor doubles a day: the
outbox row's dedupe key is the recipient and the local date). The data for one recipient is one
unit of work of a few indexed queries over their team; the chart renders in a worker thread.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from markupsafe import Markup
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from bot.charts import FunnelBar, render_funnel_async
from bot.delivery import Target
from bot.outbox import Post, enqueue
from bot.rules import FUNNEL, Rules, zone
from dialogs.messages import Attachment, Mention, Outbound
from dialogs.render import Renderer
from store.db import Database
from store.enums import FINISHED_STAGES, InvoiceStatus, LostReason, OutboxStatus, Role
from store.funnel import money_text, step_label
from store.models import (
    Account,
    Activity,
    Contact,
    DigestSubscription,
    Identity,
    Invoice,
    Opportunity,
    Org,
    Outbox,
    Payment,
    SpinEntry,
    User,
)

LATE_STAGES = ("value", "commitment", "deposit", "order", "collection")


@dataclass(frozen=True)
class Recipient:
    org_id: uuid.UUID
    org_key: str
    platform: str
    user_id: uuid.UUID
    name: str
    role: str
    lang: str
    tz: str
    local_date: date
    target_key: str | None  # platform user id (or DM channel) to post to; None: nowhere
    subscription_id: uuid.UUID | None = None

    @property
    def dedupe_key(self) -> str:
        return f"digest:{self.user_id}:{self.local_date.isoformat()}"


@dataclass
class DigestData:
    recipient: Recipient
    personal: bool
    funnel: list[dict[str, Any]] = field(default_factory=list)
    changes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stalled: list[dict[str, Any]] = field(default_factory=list)
    buckets: list[dict[str, Any]] = field(default_factory=list)
    largest: dict[str, Any] | None = None
    coaching: list[dict[str, Any]] = field(default_factory=list)
    urgent: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    # the reps the text names as "@name" who have an account on the recipient's platform
    # (a front end shows them as its own mentions: a click opens the rep)
    mentions: tuple[Mention, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.funnel or self.buckets or self.stalled or self.failures)


def _money(amounts: dict[str, Decimal]) -> str:
    parts = [money_text(amount, cur) for cur, amount in sorted(amounts.items()) if amount]
    return " + ".join(parts) or "—"


# ---- who gets a digest, when ------------------------------------------------------------------


def due_recipients(session: Session, now: datetime, *, force: bool = False,
                   only_user: uuid.UUID | None = None) -> list[Recipient]:
    """Everyone whose digest is due now and not yet queued today (all of them with `force`)."""
    orgs = {o.id: o for o in session.execute(
        select(Org.id, Org.external_id, Org.platform, Org.tz, Org.default_lang, Org.settings))}
    subs = {(s.user_id): s for s in session.scalars(select(DigestSubscription))}
    query = select(User.id, User.org_id, User.display_name, User.role, User.tz, User.lang).where(
        User.active.is_(True))
    if only_user is not None:
        query = query.where(User.id == only_user)
    else:
        subscribed = [uid for uid, s in subs.items() if s.active]
        query = query.where(or_(User.role.in_((Role.MANAGER, Role.ADMIN)),
                                User.id.in_(subscribed)))
    users = session.execute(query).all()
    idents: dict[tuple[uuid.UUID, str], str] = {}
    for user_id, platform, external in session.execute(
            select(Identity.user_id, Identity.platform, Identity.external_id)
            .where(Identity.user_id.in_([u.id for u in users]), Identity.blocked_at.is_(None))):
        idents[(user_id, platform)] = external
    out: list[Recipient] = []
    for user in users:
        org = orgs.get(user.org_id)
        if org is None:
            continue
        rules = Rules.for_org(org.settings)
        sub = subs.get(user.id)
        if sub is not None and not sub.active and only_user is None:
            continue  # opted out
        tz = user.tz or org.tz or "UTC"
        local = now.astimezone(zone(tz))
        at = time(sub.hour, sub.minute) if sub is not None else rules.digest_time
        weekdays = (frozenset(int(d) for d in sub.weekdays) if sub is not None and sub.weekdays
                    else rules.digest_weekdays)
        if not force:
            if local.isoweekday() not in weekdays or local.date() in rules.holidays:
                continue
            if local.time().replace(tzinfo=None) < at:
                continue
            if sub is not None and sub.last_sent_on is not None \
                    and sub.last_sent_on >= local.date():
                continue
        platform = sub.platform if sub is not None else org.platform
        target = (sub.channel_id if sub is not None and sub.channel_id
                  else idents.get((user.id, platform)))
        out.append(Recipient(
            org_id=org.id, org_key=org.external_id, platform=platform, user_id=user.id,
            name=user.display_name, role=user.role, lang=user.lang or org.default_lang or "en",
            tz=tz, local_date=local.date(), target_key=target,
            subscription_id=sub.id if sub is not None else None))
    if not force and out:
        queued = set(session.scalars(select(Outbox.dedupe_key).where(
            Outbox.dedupe_key.in_([r.dedupe_key for r in out]))))
        out = [r for r in out if r.dedupe_key not in queued]
    return out


def team_of(session: Session, recipient: Recipient) -> tuple[list[uuid.UUID], bool]:
    """The user ids the digest covers, and whether it is a personal (rep's own) digest."""
    if recipient.role in (Role.MANAGER, Role.ADMIN):
        reports = list(session.scalars(select(User.id).where(
            User.manager_id == recipient.user_id, User.active.is_(True))))
        if reports:
            return [recipient.user_id, *reports], False
        if recipient.role == Role.ADMIN:
            return list(session.scalars(select(User.id).where(
                User.org_id == recipient.org_id, User.active.is_(True)))), False
    return [recipient.user_id], True


# ---- gathering ----------------------------------------------------------------------------------
#
# What is due (stalled, overdue, changed, failed) is read once per org and pass, through the same
# indexes as the nudge scan, and shared by every recipient; per recipient only the funnel of
# their team (an index-only scan of (owner_id, stage, currency, amount)) and their team's
# activity of the week are read.


@dataclass
class OrgSnapshot:
    org_id: uuid.UUID
    rules: Rules
    # per owner: what is stalled, the open invoices past due on the org's calendar day, and
    # the opportunities that changed since yesterday (per kind of change)
    stalled: dict[uuid.UUID, list[dict[str, Any]]]
    overdue: dict[uuid.UUID, list[dict[str, Any]]]
    changes: dict[str, dict[uuid.UUID, list[dict[str, Any]]]]
    implication: set[uuid.UUID]          # owners with an Implication question this week
    advanced_without_dm: dict[uuid.UUID, int]
    failures: list[dict[str, Any]]


def org_snapshot(session: Session, org_id: uuid.UUID, now: datetime) -> OrgSnapshot:
    org = session.execute(select(Org.settings, Org.tz).where(Org.id == org_id)).one()
    rules = Rules.for_org(org.settings)
    today = now.astimezone(zone(org.tz)).date()
    since = now - timedelta(days=1)
    week = now - timedelta(days=7)
    opp_cols = (Opportunity.id, Opportunity.name, Opportunity.stage, Opportunity.owner_id,
                Opportunity.account_id, Account.name.label("account"))
    in_org = (select(*opp_cols).join(Account, Account.id == Opportunity.account_id)
              .where(Opportunity.org_id == org_id))

    stalled = []
    for stage in FUNNEL:
        cutoff = now - timedelta(days=rules.stalled_days[stage])
        for r in session.execute(
                in_org.add_columns(Opportunity.last_activity_at, Opportunity.stage_entered_at)
                .where(Opportunity.stage == stage, or_(
                    Opportunity.last_activity_at < cutoff,
                    and_(Opportunity.last_activity_at.is_(None),
                         Opportunity.stage_entered_at < cutoff)))):
            anchor = r.last_activity_at or r.stage_entered_at
            idle = (now - anchor).days if anchor else 0
            stalled.append({"name": r.name, "account": r.account, "stage": r.stage,
                            "owner_id": r.owner_id, "idle_days": idle,
                            "limit_days": rules.stalled_days[r.stage],
                            "urgency": idle / max(rules.stalled_days[r.stage], 1)
                            * (1 + FUNNEL.index(r.stage) / 4)})
    stalled.sort(key=lambda s: -s["urgency"])

    paid = (select(func.coalesce(func.sum(Payment.amount), 0))
            .where(Payment.invoice_id == Invoice.id).correlate(Invoice).scalar_subquery())
    overdue = []
    for inv in session.execute(
            select(Invoice.number, Invoice.amount, Invoice.currency, Invoice.due_on,
                   Account.name, Account.owner_id, paid.label("paid"))
            .join(Account, Account.id == Invoice.account_id)
            .where(Invoice.org_id == org_id, Invoice.status == InvoiceStatus.OPEN,
                   Invoice.due_on < today)):
        outstanding = inv.amount - Decimal(str(inv.paid or 0)).quantize(Decimal("0.01"))
        if outstanding <= 0:
            continue
        days = (today - inv.due_on).days
        due_index = rules.rung_due(days, outstanding)
        overdue.append({"number": inv.number, "account": inv.name, "amount": outstanding,
                        "currency": inv.currency, "days": days, "owner_id": inv.owner_id,
                        "rung": rules.ladder_days[due_index][0] if due_index >= 0 else None,
                        "amount_text": money_text(outstanding, inv.currency),
                        "urgency": days / 15 * (2 if outstanding >= rules.large_amount else 1)})

    # since yesterday: entering a stage (advanced, won, lost, put on keep-in-touch) and new
    # opportunities
    changes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in session.execute(
            in_org.add_columns(Opportunity.created_at, Opportunity.lost_reason)
            .where(Opportunity.stage.in_((*FUNNEL, *FINISHED_STAGES)),
                   Opportunity.stage_entered_at >= since)
            .order_by(Opportunity.name)):
        if r.stage in FINISHED_STAGES:
            changes[r.stage].append(dict(r._mapping))
        elif r.created_at < since:
            changes["advanced"].append(dict(r._mapping))
    for r in session.execute(in_org.where(Opportunity.created_at >= since)
                             .order_by(Opportunity.name)):
        changes["new"].append(dict(r._mapping))

    implication = set(session.scalars(
        select(Opportunity.owner_id).join(SpinEntry, SpinEntry.opportunity_id == Opportunity.id)
        .where(SpinEntry.org_id == org_id, SpinEntry.kind == "I", SpinEntry.asked_at >= week)
        .distinct()))

    # moved into step 4 or later this week, with no decision maker met at the customer
    advanced = session.execute(
        select(Opportunity.owner_id, Opportunity.account_id)
        .where(Opportunity.org_id == org_id, Opportunity.stage.in_(LATE_STAGES),
               Opportunity.stage_entered_at >= week)).all()
    met: set[uuid.UUID] = set()
    accounts = {a for _o, a in advanced}
    if accounts:
        for account_id, roles, stage in session.execute(
                select(Contact.account_id, Contact.buying_roles, Contact.relationship_stage)
                .where(Contact.account_id.in_(accounts))):
            if "decision_maker" in (roles or []) and stage not in (None, "acquaint"):
                met.add(account_id)
    without_dm: dict[uuid.UUID, int] = defaultdict(int)
    for owner_id, account_id in advanced:
        if account_id not in met:
            without_dm[owner_id] += 1

    failures = [
        {"kind": kind, "channel": channel, "error": (error or "")[:160]}
        for kind, channel, error in session.execute(
            select(Outbox.kind, Outbox.channel_id, Outbox.last_error)
            .where(Outbox.org_id == org_id,
                   Outbox.status.in_((OutboxStatus.FAILED, OutboxStatus.DEAD)),
                   Outbox.created_at >= since)
            .order_by(Outbox.created_at.desc()).limit(10))]
    return OrgSnapshot(org_id=org_id, rules=rules, stalled=_by_owner(stalled),
                       overdue=_by_owner(overdue),
                       changes={kind: _by_owner(rows) for kind, rows in changes.items()},
                       implication=implication,
                       advanced_without_dm=dict(without_dm), failures=failures)


def _by_owner(rows: list[dict[str, Any]]) -> dict[uuid.UUID, list[dict[str, Any]]]:
    out: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        out[row["owner_id"]].append(row)
    return dict(out)


def gather(session: Session, recipient: Recipient, now: datetime,
           snapshot: OrgSnapshot | None = None) -> DigestData:
    snap = snapshot if snapshot is not None else org_snapshot(session, recipient.org_id, now)
    rules = snap.rules
    team, personal = team_of(session, recipient)
    data = DigestData(recipient=recipient, personal=personal)
    names: dict[uuid.UUID, str] = {}
    keys: dict[uuid.UUID, str] = {}
    for user_id, name, key in session.execute(
            select(User.id, User.display_name, Identity.external_id)
            .outerjoin(Identity, and_(Identity.user_id == User.id,
                                      Identity.platform == recipient.platform))
            .where(User.id.in_(team))):
        names[user_id] = name
        if key is not None:
            keys[user_id] = key

    def who(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "owner": names.get(row["owner_id"], "?")}

    # funnel, per rep (the coaching needs it per rep)
    per_stage: dict[str, dict[str, Any]] = {}
    stages_of: dict[uuid.UUID, set[str]] = defaultdict(set)
    for owner_id, stage, currency, count, amount in session.execute(
            select(Opportunity.owner_id, Opportunity.stage, Opportunity.currency, func.count(),
                   func.sum(Opportunity.amount))
            .where(Opportunity.owner_id.in_(team), Opportunity.stage.in_(FUNNEL))
            .group_by(Opportunity.owner_id, Opportunity.stage, Opportunity.currency)):
        stages_of[owner_id].add(stage)
        row = per_stage.setdefault(stage, {"stage": stage, "count": 0, "amounts": {}})
        row["count"] += count
        cur = currency or ""
        row["amounts"][cur] = row["amounts"].get(cur, Decimal(0)) + Decimal(str(amount or 0))
    data.funnel = [per_stage[s] for s in FUNNEL if s in per_stage]

    changes = {kind: sorted((who(r) for m in team for r in rows.get(m, ())),
                            key=lambda r: r["name"])[:20]
               for kind, rows in snap.changes.items()}
    data.changes = {kind: rows for kind, rows in changes.items() if rows}
    mine_stalled = sorted((who(s) for m in team for s in snap.stalled.get(m, ())),
                          key=lambda s: -s["urgency"])
    data.stalled = mine_stalled[:rules.digest_stalled_limit]

    buckets: list[dict[str, Any]] = [
        {"label": rules.bucket_label(i), "count": 0, "amounts": defaultdict(Decimal)}
        for i in range(len(rules.ageing_buckets))]
    overdue = [who(o) for m in team for o in snap.overdue.get(m, ())]
    for o in overdue:
        bucket = buckets[rules.bucket(o["days"])]
        bucket["count"] += 1
        bucket["amounts"][o["currency"]] += o["amount"]
    data.buckets = [dict(b, total=_money(dict(b["amounts"]))) for b in buckets if b["count"]]
    if overdue:
        data.largest = max(overdue, key=lambda o: (o["amount"], o["days"]))

    # coaching highlights, per rep with open opportunities
    week = now - timedelta(days=7)
    active = set(session.scalars(
        select(Activity.user_id).where(Activity.user_id.in_(team), Activity.occurred_at >= week)
        .distinct()))
    for user_id in team:
        if not stages_of.get(user_id):
            continue
        notes: list[tuple[str, dict[str, Any]]] = []
        if user_id not in active:
            notes.append(("jobs.digest.no_activity", {}))
        if stages_of[user_id] & {"needs", "value"} and user_id not in snap.implication:
            notes.append(("jobs.digest.no_implication", {}))
        if snap.advanced_without_dm.get(user_id):
            notes.append(("jobs.digest.no_dm", {"count": snap.advanced_without_dm[user_id]}))
        if notes:
            data.coaching.append({"rep": names.get(user_id, "?"), "notes": notes})

    urgent: list[dict[str, Any]] = [{"kind": "invoice", **o} for o in
                                    sorted(overdue, key=lambda o: -o["urgency"])[:3]]
    urgent += [{"kind": "opportunity", **s} for s in data.stalled[:3]]
    urgent.sort(key=lambda u: -float(u["urgency"]))
    data.urgent = urgent[:3]

    if recipient.role in (Role.MANAGER, Role.ADMIN):
        data.failures = list(snap.failures)
    named = [r["owner_id"] for rows in data.changes.values() for r in rows]
    named += [s["owner_id"] for s in data.stalled]
    named += [data.largest["owner_id"]] if data.largest else []
    data.mentions = tuple(Mention(recipient.platform, keys[user_id], names[user_id])
                          for user_id in dict.fromkeys(named) if user_id in keys)
    return data


# ---- rendering ---------------------------------------------------------------------------------


def render_text(renderer: Renderer, data: DigestData) -> Markup:
    lang = data.recipient.lang
    funnel = [{"stage": row["stage"], "count": row["count"], "total": _money(row["amounts"])}
              for row in data.funnel]
    return renderer.template(
        "digest_main.j2", lang, d=data, r=data.recipient, funnel=funnel,
        lost_reasons=[str(r) for r in LostReason],
        stage=lambda code: step_label(renderer.text(lang, f"jobs.stage.{code}"), code),
        date=data.recipient.local_date.isoformat())


def funnel_bars(renderer: Renderer, data: DigestData) -> list[FunnelBar]:
    lang = data.recipient.lang
    currencies: dict[str, Decimal] = defaultdict(Decimal)
    for row in data.funnel:
        for cur, amount in row["amounts"].items():
            currencies[cur] += amount
    main = max(currencies, key=lambda c: currencies[c]) if currencies else ""
    return [FunnelBar(label=step_label(renderer.text(lang, f"jobs.short.{row['stage']}"),
                                       row["stage"]),
                      count=row["count"], amount=row["amounts"].get(main, Decimal(0)),
                      amount_text=_money(row["amounts"]))
            for row in data.funnel]


async def build_message(renderer: Renderer, data: DigestData) -> Outbound:
    """The digest as one private message with the funnel chart attached."""
    text = render_text(renderer, data)
    attachments: tuple[Attachment, ...] = ()
    if data.funnel:
        lang = data.recipient.lang
        png = await render_funnel_async(funnel_bars(renderer, data),
                                        str(renderer.text(lang, "jobs.digest.chart_title")))
        attachments = (Attachment(filename=f"funnel-{data.recipient.local_date}.png", data=png,
                                  mime="image/png",
                                  title=str(renderer.text(lang, "jobs.digest.chart_caption"))),)
    return Outbound(text, kind="digest", attachments=attachments, private=True,
                    mentions=data.mentions)


def _mark_sent(session: Session, recipient: Recipient) -> None:
    if recipient.subscription_id is not None:
        session.execute(update(DigestSubscription)
                        .where(DigestSubscription.id == recipient.subscription_id)
                        .values(last_sent_on=recipient.local_date))


def _queue(session: Session, post: Post, recipient: Recipient, now: datetime) -> bool:
    queued = bool(enqueue(session, [post], now))
    _mark_sent(session, recipient)
    return queued


@dataclass
class DigestRun:
    posts: list[Post] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)


async def run_pass(db: Database, renderer: Renderer, now: datetime, *,
                   queue: bool = True) -> DigestRun:
    """Queue (or, with `queue=False`, only build) every digest due now."""
    run = DigestRun()
    recipients = await db.run(due_recipients, now)
    snapshots: dict[uuid.UUID, OrgSnapshot] = {}
    for recipient in recipients:
        key = recipient.target_key
        if key is None:
            run.unreachable.append(recipient.name)
            continue
        snap = snapshots.get(recipient.org_id)
        if snap is None:
            snap = snapshots[recipient.org_id] = await db.run(org_snapshot, recipient.org_id,
                                                              now)
        data = await db.run(gather, recipient, now, snap)
        if data.empty:
            continue
        message = await build_message(renderer, data)
        post = Post(org_id=recipient.org_id, platform=recipient.platform,
                    target=Target(org_key=recipient.org_key, kind="user", key=key),
                    messages=(message,), kind="digest", dedupe_key=recipient.dedupe_key,
                    lang=recipient.lang)
        if queue:
            await db.run(_queue, post, recipient, now)
        run.posts.append(post)
    return run


async def on_demand(db: Database, renderer: Renderer, user_id: uuid.UUID,
                    now: datetime) -> Outbound | None:
    """The digest for one user now, whatever the time (the `digest` command)."""
    recipients = await db.run(due_recipients, now, force=True, only_user=user_id)
    if not recipients:
        return None
    data = await db.run(gather, recipients[0], now)
    return await build_message(renderer, data)


def digest_now(session: Session, renderer: Renderer, user_id: uuid.UUID,
               now: datetime) -> Outbound | None:
    """The same, inside a command's unit of work (the chart renders in the handler's thread,
    which is not the event loop)."""
    from bot.charts import render_funnel

    recipients = due_recipients(session, now, force=True, only_user=user_id)
    if not recipients:
        return None
    data = gather(session, recipients[0], now)
    if data.empty:
        return None
    lang = data.recipient.lang
    attachments: tuple[Attachment, ...] = ()
    if data.funnel:
        png = render_funnel(funnel_bars(renderer, data),
                            str(renderer.text(lang, "jobs.digest.chart_title")))
        attachments = (Attachment(filename=f"funnel-{data.recipient.local_date}.png", data=png,
                                  mime="image/png",
                                  title=str(renderer.text(lang, "jobs.digest.chart_caption"))),)
    return Outbound(render_text(renderer, data), kind="digest", attachments=attachments,
                    private=True, mentions=data.mentions)
