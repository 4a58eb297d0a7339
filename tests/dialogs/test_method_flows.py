"""The six-step method's flows in the pure engine: coaching, records, checks, and load errors.

Each flow runs with a `FlowContext` whose facts stand in for what the coach looks up about the
bound opportunity (its contacts, what the intake recorded, an invoice ...). No database.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.app import build_engine
from dialogs.engine import Engine, FlowContext, Remove, Save, Turn
from dialogs.errors import FlowError
from dialogs.flow import FLOWS_DIR, load_flows
from dialogs.render import Renderer
from dialogs.state import DialogState
from store.records import table_columns

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
SESSION = "6a1f0c62-1b7e-4c0e-9d55-3f1de0b6a001"
OPP = "00000000-0000-0000-0000-00000000d001"
ACC = "00000000-0000-0000-0000-00000000c001"
LIWEI = "00000000-0000-0000-0000-00000000e001"
INV = "00000000-0000-0000-0000-00000000f001"
METHOD_FLOWS = ("trust", "spin", "needs", "process", "value", "fab", "signals", "close",
                "contract", "invoice", "collect")
_RENDERER, _ENGINE = build_engine()


def facts(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "opportunity": {"id": OPP, "name": "Winter 2027", "account_id": ACC,
                        "account": "Daqing Oilfield", "stage": "needs", "step": 3,
                        "phase": "design", "product": "YY-Polar 900", "owed": "0 CNY",
                        "open_invoices": 0, "all_collected": False, "missing": []},
        "account": {"name": "Daqing Oilfield", "size": 200000, "last_qty": "18000",
                    "satisfaction": 2},
        "contacts": [{"id": LIWEI, "name": "Li Wei", "roles": ["designer"], "style": "owl",
                      "stage": "date", "insider": "low", "title": ""}],
        "contact": {"id": LIWEI, "name": "Li Wei", "roles": ["designer"], "stage": "date"},
        "roles": {"initiator": [], "decision_maker": [], "designer": ["Li Wei"],
                  "evaluator": [], "user": []},
        "key_contact": "Li Wei", "trusted_contact": "",
        "competitors": [{"name": "Polar Bear", "weaknesses": "late delivery", "strengths": ""}],
        "spin": {"S": 2, "P": 0, "I": 0, "N": 0}, "spin_total": 2,
        "signals": [], "close_suggestion": "promotion",
    }
    base.update(over)
    return base


def ctx(lang: str = "en", found: dict[str, Any] | None = None,
        candidates: tuple[tuple[str, str], ...] = ()) -> FlowContext:
    return FlowContext(now=NOW, lang=lang, user_id="00000000-0000-0000-0000-0000000000b1",
                       candidates=candidates, facts=found if found is not None else facts())


def start(flow: str, lang: str = "en", found: dict[str, Any] | None = None,
          engine: Engine = _ENGINE) -> Turn:
    bound = {"opportunity": {"id": OPP, "name": "Winter 2027"}}
    return engine.start(flow, session_id=SESSION, ctx=ctx(lang, found), bound=bound)


def run(turn: Turn, answers: list[str], lang: str = "en", found: dict[str, Any] | None = None,
        candidates: tuple[tuple[str, str], ...] = ()) -> list[Turn]:
    turns = []
    state = turn.state
    for answer in answers:
        turn = _ENGINE.advance(state, answer, ctx(lang, found, candidates))
        turns.append(turn)
        state = turn.state
    return turns


def text(turn: Turn) -> str:
    return "\n".join(m.text for m in turn.messages)


def saves(turns: list[Turn], table: str) -> list[Save]:
    return [e for t in turns for e in t.effects if isinstance(e, Save) and e.table == table]


def rid(name: str) -> str:
    return str(uuid.uuid5(uuid.UUID(SESSION), name))


# ---- the flows are there ---------------------------------------------------------------------


def test_every_method_flow_has_its_command_and_place_in_the_help() -> None:
    from bot.coach import Coach
    from bot.commands import load_commands
    from store.db import Database

    coach = Coach(Database("sqlite://"), _ENGINE, _RENDERER, registry=load_commands())
    for flow_id in METHOD_FLOWS:
        spec = _ENGINE.flows[flow_id].spec
        assert spec.command == flow_id and spec.uses == ["opportunity"]
        assert flow_id in coach.help_names
        for lang in ("en", "zh"):
            assert _RENDERER.text(lang, f"help.cmd.{flow_id}")
    assert {"next", "advance", "override"} <= set(coach.help_names)


def test_texts_render_before_the_subject_is_looked_up() -> None:
    """The first question of a flow is asked before anything is known: missing facts are
    blank, never an error."""
    for flow_id in METHOD_FLOWS:
        turn = _ENGINE.start(flow_id, session_id=SESSION, ctx=ctx(found={}))
        assert turn.state.cursor == "opportunity"
        after = _ENGINE.advance(turn.state, "Winter 2027",
                                ctx(found={}, candidates=((OPP, "Winter 2027"),)))
        assert after.messages and after.messages[-1].kind in ("question", "say", "summary")


# ---- trust --------------------------------------------------------------------------------


@pytest.mark.parametrize(("lang", "stage_tip", "style_tip"), [
    ("en", "Trust → goal: support and commitment", "Talking to an owl:"),
    ("zh", "信赖 → 目标：获得支持和承诺", "和猫头鹰沟通："),
])
def test_trust_coaches_the_stage_and_the_style(lang: str, stage_tip: str, style_tip: str) -> None:
    turn = start("trust", lang)
    asked = text(turn)
    assert "Li Wei" in asked and ("designer" in asked or "设计者" in asked)
    [picked, stage, style] = run(turn, ["Li Wei", "3", "3"], lang,
                                 candidates=((LIWEI, "Li Wei"),))
    assert picked.state.bound["contact"]["id"] == LIWEI
    assert picked.state.cursor == "stage"  # a role is recorded: not asked again
    assert stage_tip in text(stage) and style_tip in text(style)
    assert [(s.id, s.values) for s in saves([stage, style], "contacts")] == [
        (LIWEI, {"relationship_stage": "trust"}), (LIWEI, {"comm_style": "owl"})]


def test_trust_asks_the_buying_role_when_none_is_recorded() -> None:
    found = facts(contact={"id": LIWEI, "name": "Li Wei", "roles": [], "stage": "acquaint"})
    [picked, roles] = run(start("trust", found=found), ["Li Wei", "designer, evaluator"],
                          found=found, candidates=((LIWEI, "Li Wei"),))
    assert picked.state.cursor == "roles"
    assert saves([roles], "contacts")[0].values == {"buying_roles": ["designer", "evaluator"]}


# ---- SPIN -----------------------------------------------------------------------------------


def test_spin_suggests_questions_from_what_the_intake_recorded() -> None:
    turn = start("spin")
    assert "logged so far: S 2 · P 0 · I 0 · N 0" in text(turn)
    [situation] = run(turn, ["S"])
    assert "How many of your 200000 people work outdoors" in text(situation)
    assert "Last time you bought 18000 units" in text(situation)
    [problem] = run(start("spin"), ["P"])
    assert "Satisfaction with the last purchase was 2/5" in text(problem)
    assert "Polar Bear" in text(problem)
    [zh] = run(start("spin", "zh"), ["I"], "zh")
    assert "有人因为冻病请假时" in text(zh)


def test_spin_logs_each_question_on_the_opportunity() -> None:
    turns = run(start("spin"), ["S", "How many crews?", "Eighteen", "Li Wei", "yes", "P",
                                "What went wrong last winter?", "skip", "skip", "no"],
                candidates=((LIWEI, "Li Wei"),))
    rows = saves(turns, "spin_entries")
    first, second = rid("entry:0"), rid("entry:1")
    assert {s.id for s in rows} == {first, second}
    assert rows[0].parent == ("opportunity_id", OPP)
    assert rows[0].values == {"kind": "S", "asked_at": NOW}
    assert rows[0].defaults == {"question": ""}  # kind comes first; the question is required
    by_column = {(s.id, k): v for s in rows for k, v in s.values.items()}
    assert by_column[(first, "question")] == "How many crews?"
    assert by_column[(first, "contact_id")] == uuid.UUID(LIWEI)
    assert by_column[(second, "kind")] == "P"
    assert turns[-1].state.status == "done"


# ---- needs tree ----------------------------------------------------------------------------


def test_needs_rows_hang_from_their_parents() -> None:
    turns = run(start("needs"), [
        "Warm crews at -35 °C", "Jackets lose loft", "90% down, -40 °C rating",
        "YY-Polar 900", "Fill power ≥ 650", "yes",
        "Fewer exchanges", "Sizes run short", "skip", "no", "yes", "2026-11-20"])
    rows = {s.id: s for s in saves(turns, "needs")}
    goal, problem, solution = rid("goal:0"), rid("problem:0"), rid("solution:0")
    assert rows[goal].parent == ("opportunity_id", OPP) and rows[goal].values["kind"] == "goal"
    assert rows[problem].parent == ("parent_id", goal)
    assert rows[problem].values["opportunity_id"] == uuid.UUID(OPP)
    assert rows[solution].parent == ("parent_id", problem)
    assert rows[rid("product:0")].parent == ("parent_id", solution)
    assert rows[rid("criterion:0")].parent == ("parent_id", solution)
    assert rows[rid("problem:1")].parent == ("parent_id", rid("goal:1"))
    # the second goal's solution was skipped: no row for it, and no product or criterion asked
    assert rid("solution:1") not in rows and rid("product:1") not in rows
    assert Remove("needs", rid("solution:1")) in [e for t in turns for e in t.effects]
    [written] = saves(turns[-1:], "opportunities")
    assert written.id == OPP and written.values == {"requirements_on": date(2026, 11, 20)}


# ---- buying process -------------------------------------------------------------------------


def test_process_names_the_key_role_and_who_holds_it() -> None:
    [design] = run(start("process"), ["3"])
    assert "Lead-in period" in text(design) and "designer</b> — Li Wei" in text(design)
    [evaluation] = run(start("process"), ["evaluate"])
    assert "Competitive period" in text(evaluation) and "none recorded yet" in text(evaluation)
    assert saves([evaluation], "opportunities")[0].values == {"phase": "evaluation"}
    [zh] = run(start("process", "zh"), ["1"], "zh")
    assert "引导期" in text(zh) and "发起者" in text(zh)


# ---- value: SWOT and FAB --------------------------------------------------------------------


def test_swot_prompts_qcddms_inside_and_pest_outside() -> None:
    [strength] = run(start("value"), ["1"])
    assert "QCDDMS" in text(strength)
    assert [o.value for o in strength.messages[-1].options][:2] == ["quality", "cost"]
    turns = run(start("value"), ["o", "2", "Welfare budgets rise", "no"])
    assert "PEST" in text(turns[0])
    values: dict[str, Any] = {}
    for row in saves(turns, "swot_entries"):
        values.update(row.values)
    assert values == {"quadrant": "o", "source": "economic", "text": "Welfare budgets rise"}


def test_fab_per_product() -> None:
    turn = start("fab")
    assert "YY-Polar 900" in text(turn)
    turns = run(turn, ["YY-Polar 900", "Fill power 700", "Warmer at half the weight",
                       "Crews move freely", "no"])
    values: dict[str, Any] = {}
    for row in saves(turns, "fab_entries"):
        values.update(row.values)
    assert values == {"product": "YY-Polar 900", "feature": "Fill power 700",
                      "advantage": "Warmer at half the weight", "benefit": "Crews move freely"}


# ---- signals and close --------------------------------------------------------------------


def test_signals_are_a_checklist_of_rows() -> None:
    [ticked, _back, again] = run(start("signals"), ["1, 5", "back", "5"])
    assert "Price details" in text(ticked)
    saved = {s.id: s.values["signal"] for s in saves([ticked], "buying_signals")}
    assert saved == {rid("signal:asks_price_details"): "asks_price_details",
                     rid("signal:asks_references"): "asks_references"}
    # changing the answer takes back the row of the signal no longer ticked
    assert Remove("buying_signals", rid("signal:asks_price_details")) in again.effects
    assert [s.values["signal"] for s in saves([again], "buying_signals")] == ["asks_references"]


def test_close_suggests_a_method_and_explains_it() -> None:
    turn = start("close")
    assert "My suggestion: <b>the promotion method</b>" in text(turn)
    [chosen] = run(turn, ["direct"])
    assert "Direct suggestion:" in text(chosen)
    zh = start("close", "zh", facts(close_suggestion="direct"))
    assert "直接建议法" in text(zh) and "老虎" in text(zh)


# ---- contract, invoice, collection ------------------------------------------------------------


def test_contract_checklist_and_service_tracking() -> None:
    turns = run(start("contract"), ["1", "yes", "no", "skip", "2026-11-27", "skip"])
    assert "Check it: the signing entity must exist" in text(turns[2])  # "no" to the licence
    review = saves(turns, "opportunities")
    assert review[-1].values == {"contract_on": date(2026, 11, 27)}
    assert {"contract_review": {"terms": True, "licence": False}} in [s.values for s in review]
    tracking = run(start("contract"), ["2", "skip", "2026-11-20", "2026-11-10"])
    assert "is earlier than “Delivered”: 2026-11-20" in text(tracking[-1])
    order = run(start("contract"), ["2", "2026-11-20", "2026-11-10"])
    assert "is earlier than “Production done”: 2026-11-20" in text(order[-1])
    future = run(start("contract"), ["2", "skip", "2026-12-20"])
    assert "cannot be after today — I read that as 2026-12-20" in text(future[-1])


def test_an_invoice_is_checked_and_written_whole() -> None:
    turns = run(start("invoice"), ["1", "YY-1", "-5", "0", "100 XYZ", "¥120,000",
                                   "2026-11-20", "2026-11-10", "2026-12-20"])
    replies = [text(t) for t in turns]
    assert "can't be negative" in replies[2]
    assert "must be more than zero" in replies[3]
    assert "I don't know the currency “XYZ”" in replies[4]
    assert "2026-11-10 (Tue, 17 days ago) is earlier than “Issued on”: 2026-11-20" in replies[7]
    assert all(not saves([t], "invoices") for t in turns[:-1])  # nothing half-written
    [invoice] = saves(turns, "invoices")
    assert invoice.parent == ("opportunity_id", OPP)
    assert invoice.values == {"number": "YY-1", "amount": Decimal("120000.00"), "currency": "CNY",
                              "issued_on": date(2026, 11, 20), "due_on": date(2026, 12, 20),
                              "account_id": uuid.UUID(ACC)}


def test_a_payment_may_not_exceed_what_is_owed() -> None:
    found = facts(invoice={"id": INV, "number": "YY-1", "outstanding": "1000.00",
                           "currency": "CNY", "owed": "1,000 CNY"})
    turns = run(start("invoice", found=found), ["2", "YY-1", "¥2,000", "$500", "¥600",
                                                "2026-11-26"],
                found=found, candidates=((INV, "YY-1"),))
    replies = [text(t) for t in turns]
    assert "still owed on YY-1: 1,000 CNY" in replies[1]
    assert "2,000 CNY is more than what is still owed (1,000 CNY)" in replies[2]
    assert "This invoice is in CNY, not USD" in replies[3]
    [payment] = saves(turns, "payments")
    assert payment.parent == ("invoice_id", INV)
    assert payment.values == {"amount": Decimal("600.00"), "currency": "CNY",
                              "paid_on": date(2026, 11, 26)}
    [zh] = run(start("invoice", "zh", found), ["2", "YY-1", "2000元"], "zh", found,
               ((INV, "YY-1"),))[-1:]
    assert "超过了尚欠金额（1,000 CNY）" in text(zh)


def test_collection_follows_the_ladder_then_asks_for_a_referral() -> None:
    owed = facts(opportunity={**facts()["opportunity"], "open_invoices": 1},
                 invoice={"id": INV, "number": "YY-1", "owed": "520,000 CNY",
                          "days_overdue": 40, "rungs_done": ["phone_gentle"],
                          "suggested_rung": "phone_focused"})
    turn = start("collect", found=owed)
    assert turn.state.cursor == "which"
    [picked, rung] = run(turn, ["YY-1", "2"], found=owed, candidates=((INV, "YY-1"),))
    assert "40 days overdue" in text(picked) and "Suggested next: <b>focused phone" in text(picked)
    assert "Focused reminder" in text(rung)
    [action] = saves([rung], "collection_actions")
    assert action.parent == ("invoice_id", INV)
    assert action.values == {"rung": "phone_focused", "done_at": NOW,
                             "done_by": uuid.UUID("00000000-0000-0000-0000-0000000000b1")}
    paid = facts(opportunity={**facts()["opportunity"], "all_collected": True},
                 trusted_contact="Li Wei")
    done = start("collect", found=paid)
    assert done.state.cursor == "referral" and "ask Li Wei for a referral" in text(done)


# ---- broken flows fail at load, naming file, step and problem ----------------------------------

GOOD = """
id: demo
title: {en: "demo", zh: "示例"}
intro: {en: "Hi", zh: "你好"}
uses: [opportunity]
records:
  opportunity: {table: opportunities}
  signal: {table: buying_signals, parent: opportunity, parent_column: opportunity_id}
steps:
  - id: issued
    type: date
    ask: {en: "Issued?", zh: "开票？"}
  - id: due
    type: date
    not_before: issued
    save: opportunity.requirements_on
    ask: {en: "Due?", zh: "到期？"}
  - id: stage
    type: choice
    options: relationship_stage
    react:
      trust: {en: "Good", zh: "好"}
    ask: {en: "Stage? {{ f.opportunity.name }}", zh: "阶段？"}
  - id: signals
    type: multi_choice
    options: buying_signal
    each: true
    save: signal.signal
    ask: {en: "Signals?", zh: "信号？"}
"""


def _write(tmp_path: Path, text: str) -> Path:
    for name in ("vocab.yaml", "vocab_method.yaml"):
        shutil.copy(FLOWS_DIR / name, tmp_path / name)
    (tmp_path / "demo.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def test_a_good_method_flow_loads(tmp_path: Path) -> None:
    flows = load_flows(_write(tmp_path, GOOD), columns=table_columns())
    Engine(flows, Renderer())


@pytest.mark.parametrize(("broken", "message"), [
    (GOOD.replace("      trust: {", "      trusted: {"),
     "demo.yaml: step 'stage': `react` names 'trusted', not one of the options"),
    (GOOD.replace("not_before: issued", "not_before: stage"),
     "demo.yaml: step 'due': `not_before: stage` is not an earlier date step"),
    (GOOD.replace("    type: multi_choice\n", "    type: choice\n"),
     "demo.yaml: step 'signals': `each` needs a multi-choice step that saves"),
    (GOOD.replace("parent_column: opportunity_id}",
                  "parent_column: opportunity_id, fill: {colour: red}}"),
     "demo.yaml: record 'signal': `fill`: table 'buying_signals' has no column 'colour'"),
    (GOOD.replace('react:\n      trust: {en: "Good", zh: "好"}',
                  'react:\n      trust: {en: "Good", zh: ""}'),
     "demo.yaml: step 'stage': `react.trust` has no text in zh"),
])
def test_broken_method_flows_fail_at_load(tmp_path: Path, broken: str, message: str) -> None:
    with pytest.raises(FlowError) as caught:
        load_flows(_write(tmp_path, broken), columns=table_columns())
    assert str(caught.value).startswith(message)


def test_facts_in_a_flow_that_does_not_declare_them_fail_at_start_up(tmp_path: Path) -> None:
    flows = load_flows(_write(tmp_path, GOOD.replace("uses: [opportunity]\n", "")),
                       columns=table_columns())
    with pytest.raises(FlowError, match=r"demo.yaml: step 'stage': a text uses f, which it "
                                        r"cannot \(declare `uses:` to use facts\)"):
        Engine(flows, Renderer())


def test_dialog_state_stays_plain_json() -> None:
    import json

    turns = run(start("spin"), ["S", "How many?"])
    state: DialogState = turns[-1].state
    assert DialogState.from_json(json.loads(json.dumps(state.to_json()))) == state


@pytest.mark.parametrize(("current", "moved"), [("analysis", "trust"), ("value", None)])
def test_judging_an_existing_opportunity_again(current: str, moved: str | None) -> None:
    """`qualify` may pick an opportunity already recorded; one further down the funnel keeps
    its stage (the verdict is recorded all the same)."""
    found = facts(opportunity={**facts()["opportunity"], "stage": current})
    bound = {"account": {"id": ACC, "name": "Daqing Oilfield"}}
    turn = _ENGINE.start("qualify", session_id=SESSION, ctx=ctx(found=found), bound=bound)
    turns = run(turn, ["Winter 2027", "skip", "1", "2027-03-01", "¥1m", "4", "yes", "yes"],
                found=found, candidates=((OPP, "Winter 2027"),))
    assert turns[0].state.bound["opportunity"]["id"] == OPP
    verdict = next(s for s in saves(turns, "opportunities") if "verdict" in s.values)
    assert verdict.id == OPP and verdict.values["verdict"] == "opportunity"
    assert verdict.values.get("stage") == moved
