"""The intake scenarios of tests/scenarios.py, played in a Telegram private chat.

A rep types some lines and taps buttons for the others (choices by label or number, yes/no,
multi-choice ticks and Done, back/skip/tip), through the webhook and through polling. The rows
stored must be exactly those the console run stores.
"""

from __future__ import annotations

import pytest

from store.db import Database
from tests.conversation_checks import (
    SCENARIOS,
    Scenario,
    check_intake_rows,
    check_intake_transcript,
    stored,
)
from tests.handlers.telegram.harness import Driver, running

REP = 424242


async def _play(db: Database, scenario: Scenario, *, polling: bool) -> None:
    async with running(db, polling=polling) as h:
        driver = Driver.of(h, h.api.user(REP, language_code="en"))
        for line in scenario.script:
            await driver.say(line)
        check_intake_transcript(scenario, "\n\n".join(driver.sent_texts), driver.replies)
        # both ways of answering were used, and every button fits Telegram's 64 bytes
        assert driver.taps >= 15 and driver.typed >= 15, (driver.taps, driver.typed)
        for call in h.api.calls_to("sendMessage"):
            for row in (call.params.get("reply_markup") or {}).get("inline_keyboard", []):
                for button in row:
                    assert len(button["callback_data"].encode()) <= 64
        # every tap was acknowledged, so no client keeps spinning
        assert len(h.api.calls_to("answerCallbackQuery")) == driver.taps

    check_intake_rows(await stored(db, platform="telegram", user=str(REP)), scenario)


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_intake_scenario_over_the_webhook(db: Database, scenario: Scenario) -> None:
    await _play(db, scenario, polling=False)


@pytest.mark.parametrize("scenario", SCENARIOS[:1])
async def test_intake_scenario_over_polling(db: Database, scenario: Scenario) -> None:
    await _play(db, scenario, polling=True)
