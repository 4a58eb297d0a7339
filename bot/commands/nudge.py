"""`nudge`: what the buttons under a nudge send — `/nudge done|snooze3|snooze7|open|letter <id>`.

Done marks every open nudge about the subject done and logs an activity (so a stalled
opportunity is no longer stalled); Snooze quiets the subject for 3 or 7 days; Open shows the
subject privately with the dialog for its step; Letter writes the dunning letter or the overdue
notice for an invoice nudge. Hidden from the help: people press the buttons.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import ColumnElement, select, update

from bot.commands import CommandRequest, Registry
from bot.rules import Rules, zone
from dialogs.messages import Option, Outbound
from store import permissions, records
from store.enums import ActivityKind, NudgeStatus, SubjectType
from store.funnel import step_label
from store.models import (
    Account,
    CollectionAction,
    Invoice,
    Nudge,
    Opportunity,
    Org,
    Payment,
    User,
)
from store.permissions import Access

# the dialog that moves an opportunity on from each step
STAGE_COMMANDS = {"analysis": "qualify", "trust": "contact", "needs": "spin",
                  "value": "proposal", "commitment": "signals", "deposit": "signals",
                  "order": "invoice", "collection": "invoice"}
SNOOZE_DAYS = {"snooze3": 3, "snooze7": 7}
OPEN = (NudgeStatus.PENDING, NudgeStatus.SENT, NudgeStatus.SNOOZED)


def handle(req: CommandRequest) -> Sequence[Outbound]:
    action, _, raw_id = req.arg.strip().partition(" ")
    action = action.casefold()
    if action not in ("done", "open", "letter", *SNOOZE_DAYS) or not raw_id.strip():
        return [Outbound(req.text("jobs.cmd.usage"), kind="error")]
    try:
        nudge_id = uuid.UUID(raw_id.strip())
    except ValueError:
        return [Outbound(req.text("jobs.cmd.not_found", typed=raw_id.strip()[:40]),
                         kind="error")]
    nudge = req.session.scalar(select(Nudge).where(Nudge.id == nudge_id,
                                                   Nudge.org_id == req.speaker.org_id))
    if nudge is None:
        return [Outbound(req.text("jobs.cmd.not_found", typed=str(nudge_id)[:40]),
                         kind="error")]
    subject = _subject(req, nudge)
    if subject is None:
        return [Outbound(req.text("jobs.cmd.gone"), kind="error")]
    # Done / Snooze quiet the deal for its manager, Open / Letter show it: the owner of the
    # subject, their managers and admins only (store/permissions.py, `Access.MANAGE`)
    who = permissions.viewer(req.session, req.speaker.org_id, req.speaker.user_id,
                             req.speaker.role)
    if not who.allows(_owner(req, nudge), Access.MANAGE):
        return [Outbound(req.text("jobs.cmd.not_yours", subject=subject), kind="error",
                         private=True)]
    if action == "done":
        return _done(req, nudge, subject)
    if action in SNOOZE_DAYS:
        return _snooze(req, nudge, subject, SNOOZE_DAYS[action])
    if action == "letter":
        return _letter(req, nudge)
    return _open(req, nudge)


def _subject(req: CommandRequest, nudge: Nudge) -> str | None:
    if nudge.subject_type == SubjectType.INVOICE:
        number = req.session.scalar(select(Invoice.number).where(Invoice.id == nudge.subject_id))
        return None if number is None else str(number)
    name = req.session.scalar(select(Opportunity.name)
                              .where(Opportunity.id == nudge.subject_id))
    return None if name is None else str(name)


def _owner(req: CommandRequest, nudge: Nudge) -> uuid.UUID | None:
    """Whose deal the nudge is about: the opportunity's owner (an invoice's: its deal's, or
    its customer's owner when it belongs to no deal)."""
    if nudge.subject_type == SubjectType.INVOICE:
        row = req.session.execute(
            select(Opportunity.owner_id, Account.owner_id.label("account_owner"))
            .select_from(Invoice).join(Account, Account.id == Invoice.account_id)
            .outerjoin(Opportunity, Opportunity.id == Invoice.opportunity_id)
            .where(Invoice.id == nudge.subject_id)).first()
        return None if row is None else (row.owner_id or row.account_owner)
    owner: uuid.UUID | None = req.session.scalar(
        select(Opportunity.owner_id).where(Opportunity.id == nudge.subject_id))
    return owner


def _same_subject(nudge: Nudge) -> list[ColumnElement[bool]]:
    return [Nudge.org_id == nudge.org_id, Nudge.subject_type == nudge.subject_type,
            Nudge.subject_id == nudge.subject_id]


def _done(req: CommandRequest, nudge: Nudge, subject: str) -> Sequence[Outbound]:
    if nudge.status == NudgeStatus.DONE:
        return [Outbound(req.text("jobs.cmd.already_done"))]
    session, now = req.session, req.now
    session.execute(update(Nudge).where(*_same_subject(nudge), Nudge.status.in_(OPEN))
                    .values(status=NudgeStatus.DONE, done_at=now, snoozed_until=None))
    note = str(req.text("jobs.note.done", rule=req.text(f"jobs.rule.{nudge.rule}")))
    if nudge.subject_type == SubjectType.OPPORTUNITY:
        account_id = session.scalar(select(Opportunity.account_id)
                                    .where(Opportunity.id == nudge.subject_id))
        records.log_activity(session, org_id=req.speaker.org_id, user_id=req.speaker.user_id,
                             kind=ActivityKind.NOTE, note=note, now=now,
                             account_id=str(account_id) if account_id else None,
                             opportunity_id=str(nudge.subject_id))
        session.execute(update(Opportunity).where(Opportunity.id == nudge.subject_id)
                        .values(last_activity_at=now, updated_at=now))
    else:
        account_id = session.scalar(select(Invoice.account_id)
                                    .where(Invoice.id == nudge.subject_id))
        records.log_activity(session, org_id=req.speaker.org_id, user_id=req.speaker.user_id,
                             kind=ActivityKind.NOTE, note=note, now=now,
                             account_id=str(account_id) if account_id else None)
    return [Outbound(req.text("jobs.cmd.done", name=req.speaker.display_name, subject=subject))]


def _snooze(req: CommandRequest, nudge: Nudge, subject: str, days: int) -> Sequence[Outbound]:
    until = req.now + timedelta(days=days)
    req.session.execute(update(Nudge).where(Nudge.id == nudge.id)
                        .values(status=NudgeStatus.SNOOZED, snoozed_until=until))
    local = until.astimezone(zone(req.speaker.tz or req.speaker.org_tz))
    return [Outbound(req.text("jobs.cmd.snoozed", until=local.strftime("%Y-%m-%d %H:%M"),
                              subject=subject))]


def _open(req: CommandRequest, nudge: Nudge) -> Sequence[Outbound]:
    session = req.session
    if nudge.subject_type == SubjectType.INVOICE:
        row = session.execute(
            select(Invoice.number, Invoice.amount, Invoice.currency, Account.name)
            .join(Account, Account.id == Invoice.account_id)
            .where(Invoice.id == nudge.subject_id)).one()
        text = req.text("jobs.cmd.open_invoice", number=row.number, account=row.name,
                        amount=f"{row.amount:,.2f} {row.currency}")
        options: tuple[Option, ...] = (Option("/invoice", "invoice"),)
        if nudge.rule in ("overdue", "followup"):
            options += (Option(f"/nudge letter {nudge.id}",
                               str(req.text("jobs.rung.dunning_letter"))),)
        return [Outbound(text, options=options, private=True)]
    opp = session.execute(
        select(Opportunity.name, Opportunity.stage, Account.name.label("account"))
        .join(Account, Account.id == Opportunity.account_id)
        .where(Opportunity.id == nudge.subject_id)).one()
    command = STAGE_COMMANDS.get(opp.stage, "opp")
    text = req.text("jobs.cmd.open_opp", subject=opp.name, account=opp.account,
                    stage=step_label(req.text(f"jobs.stage.{opp.stage}"), opp.stage))
    value = f"/{command}" if command != "opp" else f"/opp {opp.name}"
    return [Outbound(text, options=(Option(value, command),), private=True)]


def _letter(req: CommandRequest, nudge: Nudge) -> Sequence[Outbound]:
    if nudge.subject_type != SubjectType.INVOICE:
        return [Outbound(req.text("jobs.cmd.no_letter"), kind="error")]
    session = req.session
    row = session.execute(
        select(Invoice.id, Invoice.number, Invoice.amount, Invoice.currency, Invoice.issued_on,
               Invoice.due_on, Account.name, Account.owner_id)
        .join(Account, Account.id == Invoice.account_id)
        .where(Invoice.id == nudge.subject_id)).one()
    paid = sum((p for p in session.scalars(select(Payment.amount)
                                            .where(Payment.invoice_id == row.id))),
               start=row.amount * 0)
    org = session.execute(select(Org.name, Org.settings)
                          .where(Org.id == req.speaker.org_id)).one()
    rep = session.scalar(select(User.display_name).where(User.id == row.owner_id))
    last_done = session.scalar(select(CollectionAction.done_at)
                               .where(CollectionAction.invoice_id == row.id)
                               .order_by(CollectionAction.done_at.desc()).limit(1))
    rules = Rules.for_org(org.settings)
    today = req.ctx.today
    days = (today - row.due_on).days
    index = rules.rung_due(days, row.amount - paid)
    rung = rules.ladder_days[index][0] if index >= 0 else "dunning_letter"
    template = ("nudge_letter_notice.j2" if rung not in ("phone_gentle", "phone_focused",
                                                          "dunning_letter")
                else "nudge_letter_dunning.j2")
    text = req.renderer.template(
        template, req.ctx.lang, account=row.name, today=today.isoformat(), number=row.number,
        issued_on=row.issued_on.isoformat(), due_on=row.due_on.isoformat(), days=days,
        amount=f"{row.amount - paid:,.2f} {row.currency}",
        pay_by=(today + timedelta(days=7)).isoformat(), rep=rep or "",
        last_done=last_done.date().isoformat() if last_done else "", company=org.name)
    return [Outbound(text, kind="letter", private=True)]


def register(registry: Registry) -> None:
    registry.add("nudge", handle, order=200, hidden=True)
