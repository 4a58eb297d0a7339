"""`lost` through Slack (issue 13, item 5): `/coach lost <deal>` in a channel opens the dialog in
the DM, the reason is a button, the rest is typed; the card shows it; a won deal is refused
before any question. English and Chinese."""

from __future__ import annotations

import pytest

from store.db import Database
from tests.handlers import lost_data as data
from tests.handlers.slack.harness import SlackClient

WORDS = {"en": {"lost": "lost", "opp": "opp", "reason": "No budget"},
         "zh": {"lost": "丢单", "opp": "商机", "reason": "没有预算"}}


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_lost_through_slack(slack: SlackClient, db: Database, lang: str) -> None:
    w = WORDS[lang]
    rep = slack.user()
    await rep.command(f"lang {lang}")
    await db.run(data.seed, "slack", rep.user)

    await rep.command(f"{w['lost']} {data.WON}")  # refused before any question
    assert data.REFUSED[lang] in "\n".join(slack.seen_by(rep))
    assert data.ASKED[lang] not in "\n".join(slack.seen_by(rep))

    await rep.command(f"{w['lost']} {data.OPEN}")
    assert data.ASKED[lang] in slack.dm_texts(rep.dm)[-1]
    await rep.click(rep.last_question(), label=w["reason"])
    for answer in data.ANSWERS.values():
        await rep.say(answer)
    data.check_lost(await db.run(data.deals))

    await rep.command(f"{w['opp']} {data.OPEN}")
    assert data.CARD[lang] in "\n".join(slack.seen_by(rep)[-1:])
