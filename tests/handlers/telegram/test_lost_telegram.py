"""`lost` through Telegram (issue 13, item 5): `/lost <deal>` (or 丢单 in Chinese), the reason
tapped, the rest typed; the card shows it; a won deal is refused before any question."""

from __future__ import annotations

import pytest

from store.db import Database
from tests.handlers import lost_data as data
from tests.handlers.telegram.harness import Driver, running

REP = 5001
WORDS = {"en": {"lost": "/lost", "opp": "/opp", "reason": "No budget"},
         "zh": {"lost": "丢单", "opp": "商机", "reason": "没有预算"}}


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_lost_through_telegram(db: Database, lang: str) -> None:
    w = WORDS[lang]
    async with running(db) as h:
        rep = Driver.of(h, h.api.user(REP, language_code=lang))
        await rep.say("/start")
        await db.run(data.seed, "telegram", str(REP))

        refused = await rep.say(f"{w['lost']} {data.WON}")
        assert data.REFUSED[lang] in refused and data.ASKED[lang] not in refused

        asked = await rep.say(f"{w['lost']} {data.OPEN}")
        assert data.ASKED[lang] in asked
        await rep.say(w["reason"])  # a tap on its button
        assert rep.taps == 1
        for answer in data.ANSWERS.values():
            await rep.say(answer)
        data.check_lost(await db.run(data.deals))

        card = await rep.say(f"{w['opp']} {data.OPEN}")
        assert data.CARD[lang] in card
