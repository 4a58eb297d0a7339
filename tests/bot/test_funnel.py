"""The funnel's exit criteria, `advance` / `override`, and `next`, on the demo company.

Each stage refuses to move until its end marker is recorded and then says exactly what is
missing; a manager may override (logged as an activity), a rep may not; `next` (and talking to
the coach with no dialog open) gives the most urgent opportunity's next action. SQLite and
PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.app import build_engine
from bot.coach import Coach, plain
from bot.commands import load_commands
from bot.demo import demo_id, load_demo
from bot.method import next_view, spin_feedback
from dialogs.messages import Inbound
from store import funnel
from store.db import Database
from store.models import Activity, BuyingSignal, Contact, Invoice, Opportunity, Payment, SpinEntry

START = datetime.fromisoformat("2026-11-27T09:00:00+08:00")
TODAY = date(2026, 11, 27)
_ENGINE = build_engine()


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
async def coach(db: Database) -> Coach:
    await db.run(load_demo, now=START)
    renderer, engine = _ENGINE
    return Coach(db, engine, renderer, clock=FakeClock(), registry=load_commands())


async def say(coach: Coach, user: str, text: str) -> str:
    reply = await coach.handle(Inbound(platform="console", org_key="demo", user_key=user,
                                       text=text, user_name=user))
    return "\n".join(plain(m.text) for m in reply.messages)


def opp_id(key: str) -> uuid.UUID:
    return demo_id("opportunity", key)


async def stage(db: Database, key: str) -> str:
    def read(session: Session) -> str:
        opp = session.get(Opportunity, opp_id(key))
        assert opp is not None
        return opp.stage

    return await db.run(read)


async def change(db: Database, key: str, **values: Any) -> None:
    def write(session: Session) -> None:
        opp = session.get(Opportunity, opp_id(key))
        assert opp is not None
        for name, value in values.items():
            setattr(opp, name, value)

    await db.run(write)


# ---- exit criteria, stage by stage ------------------------------------------------------------


async def test_step_1_needs_a_judged_opportunity(coach: Coach, db: Database) -> None:
    said = await say(coach, "lilei", "advance Branch staff winter uniforms")
    assert "stays in step 1 (customer analysis)" in said
    assert "has not been judged a real one" in said and "qualify" in said
    assert await stage(db, "bank-uniforms") == "analysis"
    await change(db, "bank-uniforms", verdict="opportunity")
    said = await say(coach, "lilei", "advance Branch staff winter uniforms")
    assert "moves to step 2: building trust" in said
    assert await stage(db, "bank-uniforms") == "trust"


async def test_step_2_needs_trust_with_a_key_contact(coach: Coach, db: Database) -> None:
    await change(db, "bank-uniforms", verdict="opportunity", stage="trust")
    said = await say(coach, "lilei", "advance Branch staff winter uniforms")
    assert "no key contact (someone with a buying role) trusts you yet" in said

    def trust_without_role(session: Session) -> None:
        qian = session.get(Contact, demo_id("contact", "qianyu"))
        assert qian is not None
        qian.relationship_stage, qian.buying_roles = "trust", []

    await db.run(trust_without_role)  # trust, but with nobody who buys: not a key contact
    assert "stays in step 2" in await say(coach, "lilei", "advance Branch staff winter uniforms")

    def give_role(session: Session) -> None:
        qian = session.get(Contact, demo_id("contact", "qianyu"))
        assert qian is not None
        qian.buying_roles = ["evaluator"]

    await db.run(give_role)
    assert "moves to step 3" in await say(coach, "lilei", "advance Branch staff winter uniforms")


async def test_step_3_needs_written_requirements(coach: Coach, db: Database) -> None:
    said = await say(coach, "zhangwei", "advance Drivers' winter uniform refresh")  # zh rep
    assert "仍停留在第 3 步" in said and "还没有记录书面需求" in said
    await change(db, "bus-driver-winter", requirements_on=TODAY)
    assert "进入第 4 步" in await say(coach, "zhangwei", "推进 Drivers' winter uniform")


async def test_step_4_needs_buying_signals_and_negotiation(coach: Coach, db: Database) -> None:
    said = await say(coach, "lilei", "advance 2027 winter down jackets for drilling crews")
    # Daqing has one signal already; negotiation has not started
    assert "negotiation has not started" in said and "no buying signals" not in said
    await change(db, "daqing-winter-2027", negotiation_on=TODAY)
    said = await say(coach, "lilei", "advance 2027 winter down jackets for drilling crews")
    assert "moves to step 5: winning commitment" in said

    def drop_signals(session: Session) -> None:
        for signal in session.scalars(select(BuyingSignal).where(
                BuyingSignal.opportunity_id == opp_id("daqing-winter-2027"))):
            session.delete(signal)

    await db.run(drop_signals)
    await change(db, "daqing-winter-2027", stage="value")
    said = await say(coach, "lilei", "advance 2027 winter down jackets for drilling crews")
    assert "no buying signals recorded" in said


async def test_steps_5_and_6_contract_deposit_acceptance_collection(coach: Coach,
                                                                    db: Database) -> None:
    said = await say(coach, "lilei", "advance Executive wool coats and down jackets")
    assert "the contract is not signed" in said
    await change(db, "bank-exec-coats", contract_on=TODAY)
    assert "moves to step 6: pressing for the deposit" in await say(
        coach, "lilei", "advance Executive wool coats")
    assert "no deposit received" in await say(coach, "lilei", "advance Executive wool coats")

    def invoice_and_pay(session: Session, amount: str, paid: str | None) -> None:
        invoice = Invoice(id=uuid.uuid4(), org_id=demo_id("org", "demo"),
                          account_id=demo_id("account", "longjiang-bank"),
                          opportunity_id=opp_id("bank-exec-coats"), number=f"T-{amount}",
                          amount=Decimal(amount), currency="CNY", issued_on=TODAY,
                          due_on=TODAY + timedelta(days=30))
        session.add(invoice)
        session.flush()
        if paid:
            session.add(Payment(id=uuid.uuid4(), org_id=invoice.org_id, invoice_id=invoice.id,
                                amount=Decimal(paid), currency="CNY", paid_on=TODAY))

    await db.run(invoice_and_pay, "258000.00", "258000.00")
    assert "moves to step 6: order" in await say(coach, "lilei", "advance Executive wool coats")
    said = await say(coach, "lilei", "advance Executive wool coats")
    assert "delivery not accepted by the customer" in said
    await change(db, "bank-exec-coats", accepted_on=TODAY)
    await db.run(invoice_and_pay, "602000.00", "300000.00")
    assert "moves to step 6: collecting receivables" in await say(
        coach, "lilei", "advance Executive wool coats")
    assert "money is still owed" in await say(coach, "lilei", "advance Executive wool coats")

    def pay_rest(session: Session) -> None:
        invoice = session.scalars(select(Invoice).where(Invoice.number == "T-602000.00")).one()
        session.add(Payment(id=uuid.uuid4(), org_id=invoice.org_id, invoice_id=invoice.id,
                            amount=Decimal("302000.00"), currency="CNY", paid_on=TODAY))

    await db.run(pay_rest)
    assert "moves to step 6: won" in await say(coach, "lilei", "advance Executive wool coats")
    assert "there is no further stage" in await say(coach, "lilei",
                                                    "advance Executive wool coats")

    def moves(session: Session) -> list[str]:
        return list(session.scalars(select(Activity.note).where(
            Activity.opportunity_id == opp_id("bank-exec-coats"),
            Activity.kind == "stage_change").order_by(Activity.occurred_at)))

    assert await db.run(moves) == ["commitment -> deposit", "deposit -> order",
                                   "order -> collection", "collection -> won"]


# ---- who may move what ---------------------------------------------------------------------


async def test_a_manager_can_override_and_it_is_logged(coach: Coach, db: Database) -> None:
    said = await say(coach, "lilei", "override Branch staff winter uniforms")
    assert "Only a manager or admin" in said
    said = await say(coach, "wangfang", "advance Branch staff winter uniforms")  # zh user
    assert "仍停留在第 1 步" in said and "override" in said  # the manager is told she may
    said = await say(coach, "wangfang", "override Branch staff winter uniforms")
    assert "进入第 2 步" in said and "经理强制推进" in said
    assert await stage(db, "bank-uniforms") == "trust"

    def logged(session: Session) -> tuple[str, uuid.UUID | None]:
        act = session.scalars(select(Activity).where(
            Activity.opportunity_id == opp_id("bank-uniforms"),
            Activity.kind == "stage_change")).one()
        return act.note or "", act.user_id

    note, user = await db.run(logged)
    assert note == "analysis -> trust (manager override; missing: verdict)"
    assert user == demo_id("user", "wangfang")


async def test_no_override_declares_a_deal_won_before_the_money_is_in(coach: Coach,
                                                                     db: Database) -> None:
    # Saibei Cement's order is in collection with money still owed (issue 13: won means
    # invoiced and collected, so a manager cannot declare it)
    said = await say(coach, "wangfang", "override Kiln crew down jackets")
    assert "还有未收回的款项" in said
    assert "不能强制标记为成交" in said and "强制推进" not in said
    assert await stage(db, "cement-2026") == "collection"
    said = await say(coach, "wangfang", "lang en")
    said = await say(coach, "wangfang", "override Saibei Cement")
    assert "not even a manager's override can declare it" in said
    assert "move it on anyway" not in said
    assert await stage(db, "cement-2026") == "collection"


async def test_a_rep_cannot_move_another_reps_opportunity(coach: Coach, db: Database) -> None:
    # Zhang Wei's deal, typed by Li Lei: the answer is that of a name that does not exist
    # (existence is not revealed), and nothing moves
    before = await stage(db, "bus-driver-winter")
    said = await say(coach, "lilei", "advance Drivers' winter uniform refresh (2027 tender)")
    assert said == "I found no opportunity called “Drivers' winter uniform refresh (2027 tender)”."
    said = await say(coach, "lilei", "advance Drivers' winter uniform refresh")
    assert "Drivers'" not in said.partition("could be:")[2]
    assert await stage(db, "bus-driver-winter") == before


async def test_a_look_alike_name_is_offered_never_moved(coach: Coach, db: Database) -> None:
    said = await say(coach, "lilei", "advance Branch staff wintr uniformz")
    assert "could be: Branch staff winter uniforms" in said
    assert "stays in step" not in said


async def test_naming_the_opportunity(coach: Coach) -> None:
    said = await say(coach, "lilei", "advance Longjiang")
    assert "could be" in said and "Branch staff winter uniforms" in said
    assert "Executive wool coats" in said
    assert "no opportunity called" in await say(coach, "lilei", "advance Nowhere Steel")
    # the customer's name alone finds its only open opportunity
    assert "还有未收回的款项" in await say(coach, "zhangwei", "advance Saibei Cement")
    # Daqing has a live deal and one kept in touch (closed): a closed deal cannot move, so
    # the customer's name means the live one
    daqing = await say(coach, "lilei", "advance daqing")
    assert "could be" not in daqing and "Office staff uniforms" not in daqing
    assert "2027 winter down jackets for drilling crews" in daqing


# ---- next ---------------------------------------------------------------------------------


async def test_next_gives_the_most_urgent_opportunitys_next_action(coach: Coach) -> None:
    said = await say(coach, "lilei", "next")
    # the executive coats: next step due in 2 days, earliest of lilei's dates
    assert "For Executive wool coats and down jackets" in said
    assert "you are in step 5: winning commitment" in said
    assert "The buying process is at purchase commitment." in said
    assert "The decision maker is 郑文 (Zheng Wen) (tiger: be brief, give the bottom line)." in said
    assert "Your planned next step: Offer the choice" in said
    assert "Next: choose your closing method" in said
    # talking to the coach with no dialog open gives the same advice
    assert "For Executive wool coats" in await say(coach, "lilei", "hello there coach")
    # zhangwei's cement invoice is 45 days overdue: the most urgent of all his dates
    said = await say(coach, "zhangwei", "下一步")
    assert "Kiln crew down jackets 2026" in said and "第 6 步，回收账款" in said
    assert "下一步：收回尚欠的款项" in said


async def test_next_names_the_key_role_of_the_buying_phase(db: Database) -> None:
    await db.run(load_demo, now=START)
    renderer, _engine = _ENGINE

    def view(session: Session) -> dict[str, Any]:
        opp = session.get(Opportunity, opp_id("bus-driver-winter"))
        assert opp is not None
        return next_view(renderer, "en", funnel.standing(session, opp))

    shown = await db.run(view)
    assert shown["step"] == 3 and str(shown["phase"]) == "purchase design"
    assert str(shown["role"]) == "designer" and shown["contact"] == "高军 (Gao Jun)"
    assert str(shown["style"]) == "owl: bring data"
    assert "get the requirements in writing" in str(shown["action"])


async def test_next_without_opportunities(db: Database) -> None:
    renderer, engine = _ENGINE
    coach = Coach(db, engine, renderer, clock=FakeClock(), registry=load_commands())
    reply = await coach.handle(Inbound(platform="console", org_key="acme", user_key="new",
                                       text="next"))
    assert "no open opportunities" in plain(reply.messages[0].text)


# ---- pure pieces ----------------------------------------------------------------------------


@pytest.mark.parametrize(("counts", "codes"), [
    ({}, ["none"]),
    ({"S": 6}, ["too_many_situation", "no_problem"]),
    ({"S": 2, "P": 1}, ["no_implication"]),
    ({"S": 1, "P": 1, "I": 1}, ["no_need_payoff"]),
    ({"S": 5, "P": 2, "I": 0, "N": 0}, ["too_many_situation", "no_implication"]),
    ({"S": 1, "P": 2, "I": 1, "N": 1}, ["good_mix"]),
])
def test_spin_feedback(counts: dict[str, int], codes: list[str]) -> None:
    assert spin_feedback(counts) == codes


def test_spin_feedback_text() -> None:
    renderer, _engine = _ENGINE
    text = str(renderer.text("en", "method.spin.fb.too_many_situation", s=6))
    assert text.startswith("6 situation questions")
    assert "暗示" in str(renderer.text("zh", "method.spin.fb.no_implication"))


@pytest.mark.parametrize(("overdue", "done", "rung"), [
    (0, [], None),
    (3, [], "phone_gentle"),
    (40, [], "phone_gentle"),  # never more than one rung above the last one taken
    (40, ["phone_gentle"], "phone_focused"),
    (40, ["phone_gentle", "phone_focused"], "dunning_letter"),
    (200, ["phone_gentle", "phone_focused", "dunning_letter", "overdue_notice", "visit",
           "compromise", "deadline"], "legal"),
])
def test_suggested_rung(overdue: int, done: list[str], rung: str | None) -> None:
    assert funnel.suggested_rung(overdue, done, funnel.LADDER_DAYS) == rung


def test_close_suggestion() -> None:
    assert funnel.close_suggestion([], "tiger") == "direct"
    assert funnel.close_suggestion(["asks_discount"], "owl") == "promotion"
    assert funnel.close_suggestion(["asks_references"], None) == "alternative"


async def test_facts_about_an_opportunity(db: Database) -> None:
    await db.run(load_demo, now=START)

    def read(session: Session) -> dict[str, Any]:
        return funnel.facts(session, demo_id("org", "demo"), {
            "opportunity": {"id": str(opp_id("power-2025-order")), "name": "x"},
            "invoice": {"id": str(demo_id("invoice", "YY-2026-0101")), "name": "YY-2026-0101"},
        }, TODAY)

    found = await db.run(read)
    assert found["opportunity"]["step"] == 6 and found["opportunity"]["open_invoices"] == 3
    assert found["opportunity"]["owed"] == "1,560,000 CNY"
    assert found["roles"]["decision_maker"] == ["许涛 (Xu Tao)"]
    invoice = found["invoice"]
    assert invoice["owed"] == "520,000 CNY" and invoice["days_overdue"] == 120
    assert invoice["rungs_done"] == ["phone_gentle", "phone_focused", "dunning_letter", "visit"]
    assert invoice["suggested_rung"] == "compromise"  # one above the visit already made


async def test_which_opportunity_offers_the_reps_open_deals_most_urgent_first(
        coach: Coach) -> None:
    """`spin` asks which opportunity with the rep's own open deals to tap or number (next
    step due soonest first); other reps' deals and closed ones are not offered."""
    reply = await coach.handle(Inbound(platform="console", org_key="demo", user_key="lilei",
                                       text="spin", user_name="lilei"))
    question = reply.messages[-1]
    assert "Which opportunity (or customer)?" in question.text
    assert [o.value for o in question.options] == [
        "Executive wool coats and down jackets",        # next step due 2026-11-29
        "2027 winter down jackets for drilling crews",  # due 2026-12-01
        "Branch staff winter uniforms"]
    assert "no opportunity called “9”" in await say(coach, "lilei", "9")
    assert "Question 1 for 2027 winter down jackets for drilling crews" in await say(
        coach, "lilei", "2")
    # a typed name still works, and a number is a number only for what was offered
    await say(coach, "lilei", "cancel")
    await say(coach, "lilei", "spin")
    assert "Question 1 for Branch staff winter uniforms" in await say(
        coach, "lilei", "branch staff winter uniforms")


async def test_spin_ideas_show_counts_as_counts(coach: Coach) -> None:
    """The customer's head count and last purchase read 200,000 and 18,000 (not 18000.00)."""
    await say(coach, "lilei", "spin")
    await say(coach, "lilei", "2027 winter down jackets for drilling crews")
    ideas = await say(coach, "lilei", "S")
    assert "200,000" in ideas and "18,000" in ideas and "18000.00" not in ideas


async def test_which_contact_offers_the_customers_contacts(coach: Coach) -> None:
    """In the SPIN dialog "which contact did you ask?" (no new contact here, and the hint
    says so) offers the opportunity's customer's contacts; "2" is the second."""
    for line in ("spin", "2027 winter down jackets for drilling crews", "S",
                 "How many crews work outdoors?"):
        await say(coach, "lilei", line)
    reply = await coach.handle(Inbound(platform="console", org_key="demo", user_key="lilei",
                                       text="About 40 crews", user_name="lilei"))
    question = reply.messages[-1]
    assert "a contact recorded at this customer" in question.text
    assert "a new name adds a contact" not in question.text
    names = [o.value for o in question.options]
    assert sorted(names) == ["刘建国 (Liu Jianguo)", "周强 (Zhou Qiang)", "孙丽 (Sun Li)",
                             "马红 (Ma Hong)"]
    assert "[6/6]" in await say(coach, "lilei", "2")

    def asked(session: Session) -> str | None:
        contact_id = session.scalars(select(SpinEntry.contact_id).order_by(
            SpinEntry.created_at.desc())).first()
        contact = session.get(Contact, contact_id) if contact_id else None
        return contact.name if contact else None

    assert await coach.db.run(asked) == names[1]
