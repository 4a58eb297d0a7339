"""`salescoach doctor` checks a live database against the records' invariants (issue 13).

The rules are the ones the dialogs obey: the date rules of the flow files, the JSON key vocabulary,
and what *won* means. Records an older version (or an import) wrote are listed by record, in en
and zh; `--fix` repairs only what needs no guess and says what it changed.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner, Result

from bot.app import build_engine
from bot.cli import cli
from bot.demo import demo_id
from bot.doctor import DateRule, date_rules
from store.db import Database
from store.models import Opportunity

AT = "2026-11-27T09:00:00"
TODAY = date(2026, 11, 27)


async def _invoke(*args: str) -> Result:
    # the CLI runs its own event loop: give it a thread of its own
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


def test_the_rules_come_from_the_flow_files() -> None:
    _renderer, engine = build_engine()
    rules = set(date_rules(engine.flows))
    # facts cannot lie in the future
    for table, column in [("opportunities", "contract_on"), ("opportunities", "delivered_on"),
                          ("opportunities", "accepted_on"), ("invoices", "issued_on"),
                          ("payments", "paid_on")]:
        assert DateRule(table, column) in rules
    # and the dates with an order keep it
    assert DateRule("opportunities", "delivered_on", "opportunities", "produced_on") in rules
    assert DateRule("opportunities", "accepted_on", "opportunities", "delivered_on") in rules
    assert DateRule("invoices", "issued_on", "opportunities", "contract_on") in rules
    assert DateRule("invoices", "due_on", "invoices", "issued_on") in rules
    assert DateRule("payments", "paid_on", "invoices", "issued_on") in rules
    # a plan (the next collection step, a due date) may lie in the past once confirmed
    assert not any(r.table == "collection_actions" for r in rules)


async def test_the_demo_is_healthy(db: Database, database_url: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert (await _invoke("demo", "--at", AT)).exit_code == 0
    result = await _invoke("doctor", "--at", AT)
    assert result.exit_code == 0, result.output
    assert "nothing wrong" in result.output
    result = await _invoke("doctor", "--at", AT, "--lang", "zh")
    assert result.exit_code == 0 and "没有问题" in result.output


def _break(session: Session) -> None:
    """What older versions and imports wrote before the dialogs refused it."""
    vests = session.get(Opportunity, demo_id("opportunity", "bus-vests"))
    office = session.get(Opportunity, demo_id("opportunity", "daqing-office"))
    winter = session.get(Opportunity, demo_id("opportunity", "daqing-winter-2027"))
    driver = session.get(Opportunity, demo_id("opportunity", "bus-driver-winter"))
    assert vests and office and winter and driver
    # declared won with 380,000 contracted and one deposit invoice of 114,000, unpaid
    vests.stage = "won"
    vests.next_step = "Chase the 30% deposit due under the contract"
    # a contract "signed" in two weeks, production finished before it was signed
    winter.contract_on = date(2026, 12, 11)
    driver.contract_on, driver.produced_on = date(2026, 11, 20), date(2026, 11, 10)
    # the keys of the first qualify flow
    q = dict(winter.qualification)
    q["worth"] = q.pop("worth_it")
    winter.qualification = q
    office.verdict_reasons = ["timetable", "strength"]
    both = dict(driver.qualification)
    both["worth"] = False  # beside worth_it: which one is true is a guess
    driver.qualification = both


async def test_doctor_lists_what_is_wrong_by_record_and_fixes_what_needs_no_guess(
        db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert (await _invoke("demo", "--at", AT)).exit_code == 0
    await db.run(_break)

    result = await _invoke("doctor", "--at", AT)
    assert (result.exit_code == 1 and result.exception is None) or isinstance(
        result.exception, SystemExit), result.exception
    lines = result.output.splitlines()
    vests = "Opportunity Station staff down vests (pilot lot)"
    assert any(line.startswith(vests) and "marked won, but 266,000 CNY is not invoiced "
               "and 114,000 CNY not collected" in line for line in lines), result.output
    assert any(line.startswith(vests) and "next step is still open" in line
               and line.endswith("[--fix repairs this]") for line in lines)
    assert any("Contract signed is 2026-12-11, after today" in line for line in lines)
    assert any("Production done is 2026-11-10, before Contract signed (2026-11-20)" in line
               for line in lines)
    assert any("Qualification holds the unknown key 'worth' (the coach reads it as 'worth_it') "
               "[--fix repairs this]" in line for line in lines)
    assert any("Verdict reasons holds the unknown key 'strength'" in line for line in lines)
    guess = [line for line in lines if "'worth'" in line and "Driver" in line]
    assert guess and not guess[0].endswith("[--fix repairs this]")
    assert lines[-1] == ("7 problem(s) found, 3 of them repairable with --fix "
                         "(nothing was changed).")

    zh = await _invoke("doctor", "--at", AT, "--lang", "zh")
    assert zh.exit_code == 1
    assert "已标记为赢单，但仍有 266,000 CNY 未开票、114,000 CNY 未回款" in zh.output
    assert "合同签订日期为 2026-12-11，晚于今天" in zh.output
    assert "发现 7 个问题，其中 3 个可用 --fix 修复" in zh.output

    fixed = await _invoke("doctor", "--at", AT, "--fix")
    assert fixed.exit_code == 1  # what needs a person is still wrong
    assert fixed.output.count("[fixed]") == 3
    assert fixed.output.splitlines()[-1] == "3 repaired, 4 left that need a person to decide."

    def stored(session: Session) -> tuple[Opportunity, Opportunity, Opportunity]:
        return (session.get(Opportunity, demo_id("opportunity", "daqing-winter-2027")),
                session.get(Opportunity, demo_id("opportunity", "daqing-office")),
                session.get(Opportunity, demo_id("opportunity", "bus-vests")))

    winter, office, vests_row = await db.run(stored)
    assert "worth" not in winter.qualification and winter.qualification["worth_it"] is True
    assert office.verdict_reasons == ["timetable", "our_strength"]
    assert vests_row.next_step is None and vests_row.next_step_due is None
    assert vests_row.amount == Decimal("380000.00")  # nothing else touched

    again = await _invoke("doctor", "--at", AT)
    assert again.exit_code == 1
    assert "[--fix repairs this]" not in again.output
    assert again.output.splitlines()[-1].startswith("4 problem(s) found, 0 of them")


async def test_doctor_checks_one_company(db: Database, database_url: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert (await _invoke("demo", "--at", AT)).exit_code == 0
    await db.run(_break)
    result = await _invoke("doctor", "--at", AT, "--org", "nowhere")
    assert result.exit_code == 1 and "There is no company “nowhere”" in result.output
    result = await _invoke("doctor", "--at", AT, "--org", "demo")
    assert result.exit_code == 1 and "7 problem(s) found" in result.output
    assert datetime.fromisoformat(AT).date() == TODAY
