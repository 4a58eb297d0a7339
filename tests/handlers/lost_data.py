"""A rep's two deals for the `lost` conversations through Slack and Telegram (issue 13, item 5):
one open (customer analysis done, needs being dug out) and one won."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Account, Identity, Opportunity, User
from tests.conversation_checks import START

OPEN = "Pipeline crew jackets"
WON = "Boiler team vests"
ANSWERS = {"note": "Their budget went to safety boots", "competitor": "Polar Bear Apparel",
           "lesson": "Meet the finance director before the tender"}
REFUSED = {"en": f"{WON} is won: a won deal cannot be lost. Nothing was changed.",
           "zh": f"{WON}已经成交：已成交的单不能记为丢单。没有做任何修改。"}
ASKED = {"en": f"Why was {OPEN} lost?", "zh": f"{OPEN}为什么丢单？"}
CARD = {"en": "reason: no budget (Their budget went to safety boots) · won by Polar Bear "
              "Apparel · lesson: Meet the finance director before the tender",
        "zh": "原因：没有预算（Their budget went to safety boots） · 被Polar Bear Apparel拿下 · "
              "教训：Meet the finance director before the tender"}


def seed(session: Session, platform: str, user_key: str) -> None:
    """The deals, owned by the platform user (who has talked to the coach once already)."""
    me = session.scalars(select(User).join(Identity, Identity.user_id == User.id).where(
        Identity.platform == platform, Identity.external_id == user_key)).one()
    account = Account(id=uuid.uuid4(), org_id=me.org_id, owner_id=me.id, name="Jilin Chemical",
                      name_key="jilin chemical")
    session.add(account)
    session.flush()
    for name, stage in ((OPEN, "needs"), (WON, "won")):
        session.add(Opportunity(org_id=me.org_id, account_id=account.id, owner_id=me.id,
                                name=name, stage=stage, amount=Decimal("500000"),
                                currency="CNY", stage_entered_at=START - timedelta(days=20),
                                last_activity_at=START - timedelta(days=20),
                                next_step="Send the samples",
                                next_step_due=START.date() + timedelta(days=3)))


def deals(session: Session) -> dict[str, dict[str, Any]]:
    return {o.name: {"stage": o.stage, "reason": o.lost_reason,
                     "details": dict(o.lost_details or {}), "next_step": o.next_step,
                     "lost_from": o.lost_from}
            for o in session.scalars(select(Opportunity))}


def check_lost(rows: dict[str, dict[str, Any]]) -> None:
    assert rows[OPEN] == {"stage": "lost", "reason": "no_budget", "details": ANSWERS,
                          "next_step": None, "lost_from": "needs"}
    # the won deal was refused: nothing saved on it
    assert rows[WON] == {"stage": "won", "reason": None, "details": {},
                         "next_step": "Send the samples", "lost_from": None}
