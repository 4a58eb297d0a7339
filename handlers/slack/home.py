"""The App Home tab: the rep's open dialogs (resume buttons), opportunities by step of the method,
next actions and overdue invoices; a manager also sees their team.

`load_home` reads everything in one unit of work and returns plain data; `home_view` turns it
into Block Kit. Texts come from the catalogs, user text is escaped for mrkdwn.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from dialogs.engine import Engine
from dialogs.messages import TurnContext
from dialogs.state import DialogState
from handlers.slack.render import EDIT, escape, plain_label
from store import conversations as conv
from store.enums import OPEN_STAGES, FunnelStage, InvoiceStatus, Role
from store.funnel import step_label
from store.models import Account, Invoice, Opportunity, User

if TYPE_CHECKING:
    from dialogs.render import Renderer
    from handlers.slack.frontend import SlackFrontEnd

RESUME = "sc_resume"
STAGE_ORDER = [s.value for s in FunnelStage if s in OPEN_STAGES]
MAX_OPPORTUNITIES = 30
MAX_ROWS = 10


@dataclass(frozen=True)
class OpenDialogRow:
    number: int
    title: str
    progress: tuple[int, int]


@dataclass(frozen=True)
class OpportunityRow:
    name: str
    account: str
    account_id: uuid.UUID
    stage: str
    amount: Decimal | None
    currency: str | None
    expected_close: date | None
    next_step: str | None
    next_step_due: date | None


@dataclass(frozen=True)
class InvoiceRow:
    number: str
    account: str
    amount: Decimal
    currency: str
    due_on: date
    days_overdue: int


@dataclass(frozen=True)
class TeamRow:
    name: str
    open_opportunities: int
    overdue_invoices: int


@dataclass
class HomeData:
    lang: str
    name: str
    today: date
    dialogs: list[OpenDialogRow] = field(default_factory=list)
    opportunities: list[OpportunityRow] = field(default_factory=list)
    overdue: list[InvoiceRow] = field(default_factory=list)
    team: list[TeamRow] | None = None


def load_home(session: Session, *, team: str, user: str, now: datetime, engine: Engine,
              default_lang: str, default_tz: str, name: str | None = None,
              lang_hint: str | None = None, admins: tuple[str, ...] = ()) -> HomeData:
    speaker = conv.ensure_speaker(
        session, platform="slack", org_key=team, user_key=user, display_name=name or user,
        lang=lang_hint, default_lang=default_lang, default_tz=default_tz, now=now,
        role="admin" if user in admins else "rep")
    lang = speaker.lang or speaker.org_lang or default_lang
    local = now.astimezone(ZoneInfo(speaker.tz or speaker.org_tz or default_tz))
    today = local.date()
    data = HomeData(lang=lang, name=speaker.display_name, today=today)
    ctx = TurnContext(now=local, lang=lang, user_id=str(speaker.user_id))
    for number, dialog in enumerate(conv.open_dialogs(session, speaker.user_id), start=1):
        state = DialogState.from_json(dialog.state)
        title = str(engine.title(state, lang))
        data.dialogs.append(OpenDialogRow(number, title[:1].upper() + title[1:],
                                          engine.progress(state, ctx)))
    rows = session.execute(
        select(Opportunity.name, Account.name, Account.id, Opportunity.stage,
               Opportunity.amount, Opportunity.currency, Opportunity.expected_close,
               Opportunity.next_step, Opportunity.next_step_due)
        .join(Account, Account.id == Opportunity.account_id)
        .where(Opportunity.org_id == speaker.org_id, Opportunity.owner_id == speaker.user_id,
               Opportunity.stage.in_(STAGE_ORDER))
        .order_by(Opportunity.expected_close, Opportunity.name)
        .limit(MAX_OPPORTUNITIES)
    ).all()
    data.opportunities = sorted((OpportunityRow(*row) for row in rows),
                                key=lambda o: STAGE_ORDER.index(o.stage))
    data.overdue = [
        InvoiceRow(number, account, amount, currency, due, (today - due).days)
        for number, account, amount, currency, due in session.execute(
            select(Invoice.number, Account.name, Invoice.amount, Invoice.currency,
                   Invoice.due_on)
            .join(Account, Account.id == Invoice.account_id)
            .where(Invoice.org_id == speaker.org_id, Account.owner_id == speaker.user_id,
                   Invoice.status == InvoiceStatus.OPEN, Invoice.due_on < today)
            .order_by(Invoice.due_on).limit(MAX_ROWS)
        ).all()
    ]
    reports = session.execute(
        select(User.id, User.display_name).where(User.manager_id == speaker.user_id,
                                                 User.active.is_(True))
        .order_by(User.display_name)
    ).all()
    if reports or speaker.role == Role.MANAGER:
        data.team = []
        for report_id, name in reports:
            open_count = session.execute(
                select(func.count()).select_from(Opportunity).where(
                    Opportunity.owner_id == report_id, Opportunity.stage.in_(STAGE_ORDER))
            ).scalar_one()
            overdue_count = session.execute(
                select(func.count()).select_from(Invoice).join(
                    Account, and_(Account.id == Invoice.account_id,
                                  Account.owner_id == report_id))
                .where(Invoice.status == InvoiceStatus.OPEN, Invoice.due_on < today)
            ).scalar_one()
            data.team.append(TeamRow(name, open_count, overdue_count))
    return data


def _md(r: Renderer, lang: str, key: str, **params: Any) -> str:
    from handlers.slack.render import to_mrkdwn

    return to_mrkdwn(r.text(lang, key, **params))


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _money(amount: Decimal | None, currency: str | None) -> str:
    if amount is None:
        return "—"
    return f"{amount:,.0f} {currency or ''}".strip()


def home_view(r: Renderer, data: HomeData) -> dict[str, Any]:
    lang = data.lang

    def t(key: str, **params: Any) -> str:
        return _md(r, lang, key, **params)

    def header(key: str) -> dict[str, Any]:
        return {"type": "header", "text": _plain(plain_label(r.text(lang, key), limit=150))}

    def section(text: str, accessory: dict[str, Any] | None = None) -> dict[str, Any]:
        block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
        if accessory:
            block["accessory"] = accessory
        return block

    def button(key: str, action_id: str, value: str) -> dict[str, Any]:
        return {"type": "button", "action_id": action_id, "value": value,
                "text": _plain(plain_label(r.text(lang, key)))}

    blocks: list[dict[str, Any]] = [
        header("slack.home.title"),
        section(t("slack.home.hello", name=data.name)),
        {"type": "divider"},
        header("slack.home.dialogs"),
    ]
    if not data.dialogs:
        blocks.append(section(t("slack.home.dialogs.none")))
    for row in data.dialogs[:MAX_ROWS]:
        blocks.append(section(
            f"*{escape(row.title)}* — {row.progress[0]}/{row.progress[1]}",
            button("slack.home.resume", RESUME, str(row.number))))
    blocks += [{"type": "divider"}, header("slack.home.opportunities")]
    if not data.opportunities:
        blocks.append(section(t("slack.home.opportunities.none")))
    stage = None
    for opp in data.opportunities:
        if opp.stage != stage:
            stage = opp.stage
            blocks.append({"type": "context", "elements": [
                {"type": "mrkdwn", "text": f"*{step_label(t(f'slack.stage.{stage}'), stage)}*"}]})
        close = opp.expected_close.isoformat() if opp.expected_close else "—"
        blocks.append(section(
            f"*{escape(opp.name)}* · {escape(opp.account)}\n"
            f"{_money(opp.amount, opp.currency)} · {t('slack.home.close', date=close)}",
            button("slack.home.edit", EDIT, f"account:{opp.account_id}")))
    blocks += [{"type": "divider"}, header("slack.home.next")]
    steps = [o for o in data.opportunities if o.next_step]
    steps.sort(key=lambda o: (o.next_step_due is None, o.next_step_due or data.today))
    if not steps:
        blocks.append(section(t("slack.home.next.none")))
    for opp in steps[:MAX_ROWS]:
        due = opp.next_step_due.isoformat() if opp.next_step_due else "—"
        late = " ⚠️" if opp.next_step_due and opp.next_step_due < data.today else ""
        blocks.append(section(f"• *{escape(opp.name)}*: {escape(opp.next_step or '')} "
                              f"({due}){late}"))
    blocks += [{"type": "divider"}, header("slack.home.overdue")]
    if not data.overdue:
        blocks.append(section(t("slack.home.overdue.none")))
    for inv in data.overdue:
        blocks.append(section(t("slack.home.overdue.row", number=inv.number,
                                account=inv.account, amount=_money(inv.amount, inv.currency),
                                days=inv.days_overdue)))
    if data.team is not None:
        blocks += [{"type": "divider"}, header("slack.home.team")]
        if not data.team:
            blocks.append(section(t("slack.home.team.none")))
        for member in data.team:
            blocks.append(section(t("slack.home.team.row", name=member.name,
                                    open=member.open_opportunities,
                                    overdue=member.overdue_invoices)))
    return {"type": "home", "blocks": blocks[:100]}


async def publish(front: SlackFrontEnd, team: str, user: str) -> None:
    who = await front.profile(user)
    data = await front.app.db.run(
        lambda session: load_home(session, team=team, user=user, now=front.coach.clock(),
                                  engine=front.coach.engine,
                                  default_lang=front.coach.default_lang,
                                  default_tz=front.coach.default_tz, name=who.name,
                                  lang_hint=who.lang, admins=front.coach.admins))
    await front.client.views_publish(user_id=user, view=home_view(front.r, data))
