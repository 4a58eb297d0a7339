"""The intake scenarios of tests/scenarios.py, played in a Telegram private chat.

A rep types some lines and taps buttons for the others (choices by label or number, yes/no,
multi-choice ticks and Done, back/skip/tip), through the webhook and through polling. The rows
stored must be exactly those the console run stores.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from store.db import Database
from store.models import Account, CompetitorNote, Contact, DialogSession, Identity, Opportunity
from tests.handlers.telegram.harness import Driver, running
from tests.handlers.test_console import (
    ACCOUNT_COLUMNS,
    COMPETITOR_COLUMNS,
    CONTACT_COLUMNS,
    OPPORTUNITY_COLUMNS,
    SCENARIOS,
    TODAY,
    Scenario,
    _only,
    _row,
)

REP = 424242


@dataclass
class Rows:
    user_id: uuid.UUID
    accounts: list[dict[str, Any]]
    contacts: list[dict[str, Any]]
    competitors: list[dict[str, Any]]
    opportunities: list[dict[str, Any]]
    dialogs: list[tuple[str, str]]


def _rows(session: Session) -> Rows:
    user_id = session.scalars(select(Identity.user_id).where(
        Identity.platform == "telegram", Identity.external_id == str(REP))).one()
    accounts = session.scalars(select(Account).order_by(Account.created_at)).all()
    contacts = session.scalars(select(Contact).order_by(Contact.created_at)).all()
    competitors = session.scalars(select(CompetitorNote)).all()
    opportunities = session.scalars(select(Opportunity)).all()
    dialogs = session.execute(select(DialogSession.flow, DialogSession.status)
                              .order_by(DialogSession.created_at)).all()
    return Rows(
        user_id,
        [{**_row(a, ACCOUNT_COLUMNS), "id": a.id, "owner_id": a.owner_id} for a in accounts],
        [{**_row(c, CONTACT_COLUMNS), "account_id": c.account_id} for c in contacts],
        [{**_row(c, COMPETITOR_COLUMNS), "account_id": c.account_id} for c in competitors],
        [{**_row(o, OPPORTUNITY_COLUMNS), "account_id": o.account_id, "owner_id": o.owner_id}
         for o in opportunities],
        [(flow, status) for flow, status in dialogs])


async def _play(db: Database, scenario: Scenario, *, polling: bool) -> None:
    async with running(db, polling=polling) as h:
        driver = Driver.of(h, h.api.user(REP, language_code="en"))
        for line in scenario.script:
            await driver.say(line)
        text = "\n\n".join(driver.sent_texts)
        for phrase in scenario.phrases:
            assert phrase in text, phrase
        first = dict(driver.replies)[scenario.start]
        assert scenario.first_question in first
        assert scenario.verdict in driver.replies[-1][1]
        assert "something went wrong" not in text
        # both ways of answering were used, and every button fits Telegram's 64 bytes
        assert driver.taps >= 15 and driver.typed >= 15, (driver.taps, driver.typed)
        for call in h.api.calls_to("sendMessage"):
            for row in (call.params.get("reply_markup") or {}).get("inline_keyboard", []):
                for button in row:
                    assert len(button["callback_data"].encode()) <= 64
        # every tap was acknowledged, so no client keeps spinning
        assert len(h.api.calls_to("answerCallbackQuery")) == driver.taps

    rows = await db.run(_rows)
    assert _only(rows.accounts, ACCOUNT_COLUMNS) == [scenario.account]
    assert rows.accounts[0]["owner_id"] == rows.user_id
    assert _only(rows.contacts, CONTACT_COLUMNS) == scenario.contacts
    assert _only(rows.competitors, COMPETITOR_COLUMNS) == scenario.competitors
    [opp] = rows.opportunities
    assert {k: opp[k] for k in scenario.opportunity} == scenario.opportunity
    assert opp["owner_id"] == rows.user_id
    assert opp["expected_close"] == scenario.expected_close(TODAY)
    assert {k: opp["qualification"].get(k) for k in scenario.qualification} == \
        scenario.qualification
    assert rows.dialogs == [("intake", "done"), ("qualify", "done")]


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_intake_scenario_over_the_webhook(db: Database, scenario: Scenario) -> None:
    await _play(db, scenario, polling=False)


@pytest.mark.parametrize("scenario", SCENARIOS[:1])
async def test_intake_scenario_over_polling(db: Database, scenario: Scenario) -> None:
    await _play(db, scenario, polling=True)
