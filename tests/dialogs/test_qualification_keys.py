"""One vocabulary for the keys inside JSON columns (issue 13, item 1).

The qualification checks were saved as `worth`/`strength` and read as `worth_it`/`our_strength`:
the card said "✗ worth it" after a yes. These tests make that class of bug impossible to bring
back: flows are refused at load when they write a key the readers do not know; every key the
readers know is written by some flow; the verdict and the health score agree on what passed;
and a real conversation, in English and Chinese, ends with a card that shows what was answered.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.app import build_engine
from bot.commands import load_commands
from dialogs.engine import Engine, Save
from dialogs.flow import FLOWS_DIR, FlowError, check_key, load_flows
from dialogs.messages import TurnContext
from store import health
from store.db import Database
from store.enums import JSON_KEYS, QualificationCheck
from store.records import json_keys, table_columns
from tests import scenarios as sc
from tests.conversation_checks import converse

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return build_engine()[1]


def test_every_json_key_a_flow_saves_is_one_the_readers_know() -> None:
    flows = load_flows(columns=table_columns(), json_keys=json_keys())
    written: dict[tuple[str, str], set[str]] = {}
    for flow in flows.flows.values():
        for step in flow.all_steps():
            parts = (step.save or "").split(".")
            if len(parts) == 3:
                table = flow.spec.records[parts[0]].table
                written.setdefault((table, parts[1]), set()).add(parts[2])
        if flow.spec.verdict is not None:
            table = flow.spec.records[flow.spec.verdict.record].table
            written.setdefault((table, flow.spec.verdict.column), set()).update(
                check_key(c) for c in flow.spec.verdict.checks)
    known = json_keys()
    for where, keys in written.items():
        assert keys <= known[where], (where, keys - known[where])
    # and every key a reader knows is one some flow writes (nothing read that nobody saves)
    for where, keys in known.items():
        assert keys <= written.get(where, set()), (where, keys - written.get(where, set()))


def test_the_verdict_records_every_qualification_check(engine: Engine) -> None:
    verdict = engine.flows["qualify"].spec.verdict
    assert verdict is not None
    assert {check_key(c) for c in verdict.checks} == {c.value for c in QualificationCheck}


def test_a_flow_writing_an_unknown_key_is_refused(tmp_path: Path) -> None:
    for path in FLOWS_DIR.glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    qualify = tmp_path / "qualify.yaml"
    qualify.write_text(qualify.read_text(encoding="utf-8").replace(
        "opportunity.qualification.worth_it", "opportunity.qualification.worth"), encoding="utf-8")
    with pytest.raises(FlowError, match=r"'worth' is not a key of opportunities\.qualification"):
        load_flows(tmp_path, columns=table_columns(), json_keys=json_keys())
    raw = yaml.safe_load((tmp_path / "qualify.yaml").read_text(encoding="utf-8"))
    assert raw["id"] == "qualify"


def test_every_reader_counts_every_key() -> None:
    """Health gives the points for each check on its own; the demo writes only known keys."""
    for check in QualificationCheck:
        assert health.passed(True, check.value)
        assert not health.passed(None, check.value)
    demo = yaml.safe_load((Path(__file__).parents[2] / "bot/demo/company.yaml")
                          .read_text(encoding="utf-8"))
    known = {k.value for k in JSON_KEYS[("opportunities", "qualification")]}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "qualification":
                    assert set(value) <= known, set(value) - known
                if key == "verdict_reasons":
                    assert set(value) <= known, set(value) - known
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(demo)


ANSWERS = st.fixed_dictionaries({
    "need": st.sampled_from(["1", "2", "3"]),
    "timetable": st.sampled_from(["skip", "2027-03-31", "2028-06-30"]),
    "budget": st.sampled_from(["skip", "¥1,200,000"]),
    "can_win": st.sampled_from(["1", "2", "3", "4", "5"]),
    "worth": st.sampled_from(["y", "n"]),
    "strength": st.sampled_from(["y", "n"]),
})


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answers=ANSWERS)
def test_verdict_and_health_agree_on_what_passed(engine: Engine,
                                                answers: dict[str, str]) -> None:
    ctx = TurnContext(now=NOW, lang="en", user_id="u1")
    bound = {"account": {"id": str(uuid.uuid4()), "name": "Daqing", "handed": "1"}}
    turn = engine.start("qualify", session_id=str(uuid.UUID(int=7)), ctx=ctx, bound=bound)
    for line in ["Winter 2027", "skip", answers["need"], answers["timetable"], answers["budget"],
                 answers["can_win"], answers["worth"], answers["strength"]]:
        turn = engine.advance(turn.state, line, ctx)
    final = [e for e in turn.effects if isinstance(e, Save) and "verdict" in e.values][-1].values
    failed = set(final["verdict_reasons"])
    missing = {k for k, v in final["qualification"].items()
               if not health.passed(v, k, NOW.date())}
    assert failed == missing
    assert set(final["qualification"]) == {c.value for c in QualificationCheck}


def _card_line(reply: str, label: str) -> str:
    return next(line for line in reply.splitlines() if line.startswith(label))


async def test_card_shows_the_checks_answered_in_english(db: Database) -> None:
    chat = await converse(db, [*sc.INTAKE_EN, f"opp {sc.INTAKE_EN_OPPORTUNITY['name']}"],
                         registry=load_commands())
    line = _card_line(chat.reply(-1), "Qualification")
    assert "✓ worth it" in line and "✓ our strength" in line, line
    assert "✗" not in line, line


async def test_card_shows_the_checks_answered_in_chinese(db: Database) -> None:
    chat = await converse(db, [*sc.INTAKE_ZH, f"商机 {sc.INTAKE_ZH_OPPORTUNITY['name']}"],
                         registry=load_commands())
    line = _card_line(chat.reply(-1), "机会判断")
    assert "✓ 值得投入" in line and "✓ 我们的强项" in line, line
    assert "✗ 预算" in line, line  # the Chinese intake skips the budget
