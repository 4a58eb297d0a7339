""""All collected" only when everything is invoiced and paid (issue 13, item 4).

The demo's bank opportunity is worth 1,200,000 CNY; the method script invoices 360,000 and
collects it. Before the rest is invoiced, the deal must not be won, and the coach says what is
still to invoice.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.commands import load_commands
from bot.demo import demo_id, load_demo
from store.db import Database
from store.models import Opportunity
from tests import scenarios as sc
from tests.conversation_checks import START, converse

OPP = sc.METHOD_OPPORTUNITY


def _before_second_invoice(script: list[tuple[str, str | None]]) -> list[str]:
    for i, (line, _) in enumerate(script):
        if line.endswith(OPP) and script[i + 2][0] == "YY-2027-0001":
            return [typed for typed, _ in script[:i]]
    raise AssertionError("no second invoice in the script")


def _stage(session: Any) -> str:
    opp = session.get(Opportunity, demo_id("opportunity", "bank-uniforms"))
    return str(opp.stage)


@pytest.mark.parametrize(("lang", "script", "said"), [
    ("en", sc.METHOD_EN, "not everything is invoiced yet"),
    ("zh", sc.METHOD_ZH, "还没有全部开票"),
])
async def test_a_deal_with_uninvoiced_money_is_not_won(db: Database, lang: str,
                                                       script: list[tuple[str, str | None]],
                                                       said: str) -> None:
    await db.run(load_demo, now=START)
    lines = _before_second_invoice(script)
    advance = script[0][0].split()[0]  # advance / 推进
    chat = await converse(db, [*lines, f"{advance} {OPP}", f"{advance} {OPP}"],
                          user=sc.METHOD_USER,
                          org=sc.METHOD_ORG, lang=lang, registry=load_commands())
    assert await db.run(_stage) == "collection"
    assert said in chat.reply(-1)
