"""The pure engine: (state, input, context) -> (state, messages, effects), no database."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from bot.app import build_engine
from dialogs.engine import Engine, Log, Remove, Save, Turn
from dialogs.messages import TurnContext
from dialogs.state import DialogState

SHANGHAI = timezone(timedelta(hours=8))
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=SHANGHAI)
SESSION = str(uuid.UUID(int=1))


@pytest.fixture(scope="module")
def engine() -> Engine:
    return build_engine()[1]


def ctx(lang: str = "en", candidates: tuple[tuple[str, str], ...] = ()) -> TurnContext:
    return TurnContext(now=NOW, lang=lang, user_id="u1", candidates=candidates)


def text_of(turn: Turn) -> str:
    return "\n".join(m.text for m in turn.messages)


def drive(engine: Engine, flow: str, inputs: list[str], lang: str = "en") -> list[Turn]:
    turns = [engine.start(flow, session_id=SESSION, ctx=ctx(lang))]
    for line in inputs:
        turns.append(engine.advance(turns[-1].state, line, ctx(lang)))
    return turns


def saves(turn: Turn) -> list[Save]:
    return [e for e in turn.effects if isinstance(e, Save)]


UP_TO_PURCHASE = ["Daqing Oilfield", "1", "state", "5000", "oil and gas", "referral"]


def test_start_asks_the_first_question_with_progress(engine: Engine) -> None:
    turn = engine.start("intake", session_id=SESSION, ctx=ctx())
    assert turn.state.cursor == "name"
    assert "customer information sheet" in turn.messages[0].text
    assert turn.messages[-1].text.startswith("<i>[1/")
    assert "customer's name" in turn.messages[-1].text


def test_each_answer_is_saved_where_the_flow_says(engine: Engine) -> None:
    turns = drive(engine, "intake", ["Daqing Oilfield", "oil", "1", "1.2万"])
    account_id = str(uuid.uuid5(uuid.UUID(SESSION), "account"))
    assert saves(turns[1]) == [Save("accounts", account_id, {"name": "Daqing Oilfield"}, None)]
    assert saves(turns[2])[0].values == {"industry": "oil_gas"}  # a unique label prefix
    assert saves(turns[3])[0].values == {"nature": "state_owned"}  # by number
    assert saves(turns[4])[0].values == {"size_employees": Decimal("12000")}
    assert "Which industry is Daqing Oilfield in?" in turns[1].messages[-1].text


def test_advancing_does_not_touch_the_old_state(engine: Engine) -> None:
    first = engine.start("intake", session_id=SESSION, ctx=ctx())
    before = first.state.to_json()
    engine.advance(first.state, "Daqing", ctx())
    assert first.state.to_json() == before


def test_state_round_trips_through_json(engine: Engine) -> None:
    turns = drive(engine, "intake", [*UP_TO_PURCHASE, "yes", "800"])
    state = turns[-1].state
    assert DialogState.from_json(state.to_json()) == state


def test_condition_asks_last_purchase_only_when_there_was_one(engine: Engine) -> None:
    no = drive(engine, "intake", [*UP_TO_PURCHASE, "no"])[-1]
    yes = drive(engine, "intake", [*UP_TO_PURCHASE, "是"])[-1]
    assert no.state.cursor == "address"
    assert yes.state.cursor == "last_qty"
    assert no.state.to_json() != yes.state.to_json()
    assert engine.progress(yes.state, ctx())[1] == engine.progress(no.state, ctx())[1] + 3


def test_unreadable_answer_gets_a_clear_reask_and_changes_nothing(engine: Engine) -> None:
    turns = drive(engine, "intake", [*UP_TO_PURCHASE, "yes", "lots"])
    last = turns[-1]
    assert last.state == turns[-2].state
    assert last.effects == ()
    assert last.messages[0].kind == "error"
    assert "How many units" in last.messages[-1].text


def test_required_question_cannot_be_skipped_optional_can(engine: Engine) -> None:
    turns = drive(engine, "intake", ["skip"])
    assert "can't be skipped" in turns[1].messages[0].text
    assert turns[1].state.cursor == "name"
    turns = drive(engine, "intake", ["Daqing", "1", "1", "skip"])
    assert turns[-1].state.answers["size"] is None
    assert saves(turns[-1])[0].values == {"size_employees": None}
    assert turns[-1].state.cursor == "business"


def test_back_reasks_with_the_current_answer_then_returns(engine: Engine) -> None:
    turns = drive(engine, "intake", ["Daqing", "1", "back"])
    back = turns[-1]
    assert back.state.cursor == "industry"
    assert "Current answer: Oil &amp; gas" in back.messages[-1].text
    again = engine.advance(back.state, "power", ctx())
    assert "Updated" in again.messages[0].text
    assert again.state.cursor == "nature"  # back to where the rep was
    assert again.state.answers["industry"] == "power"


def test_back_on_the_first_question_says_so(engine: Engine) -> None:
    turn = drive(engine, "intake", ["back"])[-1]
    assert "nothing to go back to" in turn.messages[0].text
    assert turn.state.cursor == "name"


def test_edit_lists_answers_and_changes_the_chosen_one(engine: Engine) -> None:
    turns = drive(engine, "intake", ["Daqing", "1", "1", "edit"])
    listing = turns[-1].messages[-1]
    assert [o.value for o in listing.options] == ["name", "industry", "nature"]
    assert listing.options[0].label == "Customer: Daqing"
    picked = engine.advance(turns[-1].state, "1", ctx())
    assert picked.state.cursor == "name"
    renamed = engine.advance(picked.state, "Daqing Oilfield Co.", ctx())
    assert renamed.state.cursor == "size"  # where the rep was before editing
    assert saves(renamed)[0].values == {"name": "Daqing Oilfield Co."}


def test_hiding_steps_clears_what_they_saved(engine: Engine) -> None:
    turns = drive(engine, "intake", [*UP_TO_PURCHASE, "yes", "800", "edit"])
    keys = [o.value for o in turns[-1].messages[-1].options]
    number = keys.index("has_last_purchase") + 1
    pick = engine.advance(turns[-1].state, str(number), ctx())
    changed = engine.advance(pick.state, "no", ctx())
    cleared = [s.values for s in saves(changed)]
    assert {"last_purchase_qty": None} in cleared
    assert changed.state.cursor == "address"


def _to_contacts(engine: Engine) -> list[Turn]:
    start = [*UP_TO_PURCHASE, "no", "skip", "skip", "skip", "1,2", "skip"]
    return drive(engine, "intake", start)


CONTACT = ["Liu Qiang", "skip", "2", "procurement", "designer", "mid", "owl", "2", "skip", "skip"]


def test_repeating_group_gives_each_contact_its_own_row(engine: Engine) -> None:
    turns = _to_contacts(engine)
    assert turns[-1].state.cursor == "contacts.0.contact_name"
    state = turns[-1].state
    for line in [*CONTACT, "yes", "Zhao Min"]:
        turn = engine.advance(state, line, ctx())
        state = turn.state
    first = str(uuid.uuid5(uuid.UUID(SESSION), "contact:0"))
    second = str(uuid.uuid5(uuid.UUID(SESSION), "contact:1"))
    assert saves(turn) == [Save("contacts", second, {"name": "Zhao Min"},
                                ("account_id", str(uuid.uuid5(uuid.UUID(SESSION), "account"))))]
    assert state.answers["contacts.0.contact_roles"] == ["designer"]
    assert first != second
    # going back to "add another?" and saying no takes the second contact back
    back = engine.advance(engine.advance(state, "back", ctx()).state, "back", ctx())
    assert back.state.cursor == "contacts.more.0"
    no = engine.advance(back.state, "no", ctx())
    assert Remove("contacts", second) in no.effects
    assert not any(k.startswith("contacts.1.") for k in no.state.answers)
    assert no.state.cursor == "competitors.start"


def test_finishing_intake_summarises_and_hands_the_account_to_qualify(engine: Engine) -> None:
    turns = _to_contacts(engine)
    state = turns[-1].state
    for line in [*CONTACT, "no", "no"]:
        turn = engine.advance(state, line, ctx())
        state = turn.state
    assert state.status == "done"
    summary = next(m for m in turn.messages if m.kind == "summary")
    assert "Contact 1 · Name: Liu Qiang" in summary.text
    assert "Customer: Daqing Oilfield" in summary.text
    assert turn.next_flow is not None
    flow, bound = turn.next_flow
    assert flow == "qualify"
    assert bound["account"]["id"] == str(uuid.uuid5(uuid.UUID(SESSION), "account"))
    assert bound["account"]["name"] == "Daqing Oilfield"
    assert any(isinstance(e, Log) and e.kind == "intake" for e in turn.effects)
    qualify = engine.start("qualify", session_id=str(uuid.uuid4()), ctx=ctx(), bound=bound)
    assert qualify.state.cursor == "opp_name"  # the customer is already known


def _qualify(engine: Engine, answers: list[str], lang: str = "en") -> Turn:
    bound = {"account": {"id": str(uuid.uuid4()), "name": "Daqing", "handed": "1"}}
    turn = engine.start("qualify", session_id=SESSION, ctx=ctx(lang), bound=bound)
    for line in answers:
        turn = engine.advance(turn.state, line, ctx(lang))
    return turn


def test_verdict_real_opportunity(engine: Engine) -> None:
    turn = _qualify(engine, ["Winter 2027", "skip", "1", "2027-03-31", "¥1,200,000", "4", "y",
                             "y"])
    verdict = next(m for m in turn.messages if m.kind == "verdict")
    assert "clear, imminent, valuable opportunity" in verdict.text
    values = saves(turn)[-1].values
    assert values["verdict"] == "opportunity"
    assert values["stage"] == "trust"
    assert values["qualification"]["budget"] == {"amount": "1200000.00", "currency": "CNY"}


def test_verdict_keep_in_touch_names_the_reasons(engine: Engine) -> None:
    turn = _qualify(engine, ["冬装", "skip", "2", "skip", "skip", "2", "是", "否"], lang="zh")
    verdict = next(m for m in turn.messages if m.kind == "verdict")
    assert "维持联系" in verdict.text
    reasons = ("需求还不明确", "还不知道预算", "没有采购时间表", "赢单把握较低", "不是我们的擅长")
    for reason in reasons:
        assert reason in verdict.text
    assert "不值得投入" not in verdict.text
    values = saves(turn)[-1].values
    assert values["verdict"] == "keep_in_touch"
    assert values["verdict_reasons"] == ["need", "budget", "timetable", "can_win", "our_strength"]


def test_back_does_not_step_into_what_the_previous_flow_handed_over(engine: Engine) -> None:
    turn = _qualify(engine, ["back"])
    assert "nothing to go back to" in turn.messages[0].text


ACCOUNTS = (("a1", "Daqing Oilfield Company"), ("a2", "Beijing Public Transport Group"),
            ("a3", "Beijing Bus Group"))


def test_reference_exact_near_and_unknown(engine: Engine) -> None:
    start = engine.start("qualify", session_id=SESSION, ctx=ctx())
    exact = engine.advance(start.state, "daqing oilfield company", ctx(candidates=ACCOUNTS))
    assert exact.state.bound["account"] == {"id": "a1", "name": "Daqing Oilfield Company"}
    near = engine.advance(start.state, "Daqing Oilfeld", ctx(candidates=ACCOUNTS))
    assert "Did you mean <b>Daqing Oilfield Company</b>?" in near.messages[-1].text
    yes = engine.advance(near.state, "yes", ctx())
    assert yes.state.bound["account"]["id"] == "a1"
    assert yes.state.cursor == "opp_name"
    no = engine.advance(near.state, "no", ctx())
    assert no.state.cursor == "account" and no.state.pending is None
    several = engine.advance(start.state, "Beijing", ctx(candidates=ACCOUNTS))
    assert {o.label for o in several.messages[-1].options} >= {"Beijing Bus Group"}
    unknown = engine.advance(start.state, "Sinopec", ctx(candidates=ACCOUNTS))
    assert "no customer called “Sinopec”" in unknown.messages[0].text
    assert unknown.state.cursor == "account"


def test_tip_gives_the_methods_guidance(engine: Engine) -> None:
    turn = drive(engine, "intake", ["Daqing", "tip"])[-1]
    assert "Industry penetration" in turn.messages[0].text
    assert turn.state.cursor == "industry"
    zh = drive(engine, "intake", ["大庆油田", "提示"], lang="zh")[-1]
    assert "行业渗透法" in zh.messages[0].text


def test_user_text_is_data_never_a_template(engine: Engine) -> None:
    turn = drive(engine, "intake", ["{{ 7*7 }} <b>Co</b> & Sons"])[-1]
    asked = turn.messages[-1].text
    assert "{{ 7*7 }} &lt;b&gt;Co&lt;/b&gt; &amp; Sons" in asked
    assert "49" not in asked
    assert saves(turn)[0].values["name"] == "{{ 7*7 }} <b>Co</b> & Sons"


def test_overlong_text_is_refused_with_the_limit(engine: Engine) -> None:
    turn = drive(engine, "intake", ["x" * 300])[-1]
    assert "300 characters; the limit here is 200" in turn.messages[0].text
    assert turn.effects == () and turn.state.cursor == "name"


def test_cancel_closes_and_keeps_what_was_saved(engine: Engine) -> None:
    turn = drive(engine, "intake", ["Daqing", "cancel"])[-1]
    assert turn.state.status == "cancelled"
    assert turn.effects == ()
    assert "stays saved" in turn.messages[0].text


def test_chinese_throughout(engine: Engine) -> None:
    turns = drive(engine, "intake", ["北京公交集团", "公交", "国有", "两万", "跳过", "客户介绍"],
                  lang="zh")
    assert "北京公交集团属于哪个行业" in turns[1].messages[-1].text
    assert turns[-1].state.answers["industry"] == "bus_transport"
    assert turns[-1].state.answers["nature"] == "state_owned"
    assert turns[-1].state.answers["size"] == "20000"
    assert turns[-1].state.answers["business"] is None
    assert "客户以前采购过这类产品吗" in turns[-1].messages[-1].text
