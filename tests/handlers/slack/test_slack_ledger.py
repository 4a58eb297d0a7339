"""The ledger test through the Slack adapter (see tests/handlers/test_ledger.py): the demo
company installed in a Slack workspace, lilei walks the method in her DM — typing, clicking
buttons and select menus — and after each move the database holds the expected ledger."""

from __future__ import annotations

from typing import Any

import pytest

from bot.demo import load_demo
from store.db import Database
from tests.conversation_checks import START
from tests.fakes.slack_api import TEAM_ID
from tests.handlers.slack.harness import REP, SlackClient
from tests.handlers.slack.test_conversation import play
from tests.handlers.test_ledger import _assert_ledgers, _install, ledger, script


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_ledger_through_slack(db: Database, slack: SlackClient, lang: str) -> None:
    await db.run(load_demo, now=START)
    await db.run(_install("slack", TEAM_ID, REP))
    lines, moved = script(lang)
    rep = slack.user(REP, name="lilei", locale="zh-CN" if lang == "zh" else "en-US")
    ledgers: list[dict[str, Any]] = []
    for index, line in enumerate(lines):
        await play(slack, rep, line)
        if index in moved:
            ledgers.append(await db.run(ledger))
    _assert_ledgers(ledgers, lang, "slack")
