"""App Home (views.publish) and the record-editing modals (views.open, view_submission)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from store import conversations as conv
from store.db import Database
from store.models import Account, Contact, Invoice, Opportunity, User
from tests.handlers.slack.harness import CHANNEL, SlackClient, SlackUser, plain

NOW = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)


def _speaker(session: Session, who: SlackUser, role: str = "rep") -> conv.Speaker:
    return conv.ensure_speaker(session, platform="slack", org_key=who.team, user_key=who.user,
                               display_name=who.name, lang=None, default_lang="en",
                               default_tz="UTC", now=NOW, role=role)


def _seed(session: Session, rep: SlackUser, boss: SlackUser) -> dict[str, Any]:
    manager = _speaker(session, boss, role="manager")
    me = _speaker(session, rep)
    session.execute(update(User).where(User.id == me.user_id)
                    .values(manager_id=manager.user_id))
    account = Account(org_id=me.org_id, owner_id=me.user_id, name="Daqing <Oilfield> & Co",
                      name_key="daqing <oilfield> & co", industry="oil_gas", size_employees=12000,
                      created_at=NOW, updated_at=NOW)
    session.add(account)
    session.flush()
    session.add_all([
        Opportunity(org_id=me.org_id, account_id=account.id, owner_id=me.user_id,
                    name="2027 winter uniforms", stage="trust", amount=Decimal("120000"),
                    currency="CNY", expected_close=date(2027, 3, 31),
                    next_step="Visit Liu Qiang", next_step_due=date(2026, 11, 20),
                    created_at=NOW, updated_at=NOW),
        Opportunity(org_id=me.org_id, account_id=account.id, owner_id=me.user_id,
                    name="Summer shirts", stage="value", created_at=NOW, updated_at=NOW),
        Opportunity(org_id=me.org_id, account_id=account.id, owner_id=me.user_id,
                    name="Lost deal", stage="lost", created_at=NOW, updated_at=NOW),
        Invoice(org_id=me.org_id, account_id=account.id, number="INV-7", amount=Decimal("50000"),
                currency="CNY", issued_on=date(2026, 9, 1), due_on=date(2026, 10, 28),
                created_at=NOW, updated_at=NOW),
        Invoice(org_id=me.org_id, account_id=account.id, number="INV-8", amount=Decimal("9"),
                currency="CNY", issued_on=date(2026, 9, 1), due_on=date(2026, 12, 28),
                created_at=NOW, updated_at=NOW),
        Contact(org_id=me.org_id, account_id=account.id, owner_id=me.user_id,
                name="Liu Qiang", name_key="liu qiang", buying_roles=["evaluator"],
                personal_notes="Plays badminton", created_at=NOW, updated_at=NOW),
    ])
    return {"account_id": account.id}


def _home_text(view: dict[str, Any]) -> str:
    out = []
    for block in view["blocks"]:
        if "text" in block:
            out.append(block["text"]["text"])
        for element in block.get("elements", []):
            out.append(element.get("text", ""))
        if "accessory" in block:
            out.append("[" + block["accessory"]["text"]["text"] + "]")
    return plain("\n".join(str(x) for x in out))


async def test_app_home_shows_dialogs_opportunities_next_actions_and_overdue(
        slack: SlackClient, db: Database) -> None:
    rep, boss = slack.user(), slack.user("U0BOSS", "wang")
    await db.run(_seed, rep, boss)
    await rep.command("intake")
    await rep.say("Harbin Bus Group")
    await rep.open_home()
    [publish] = slack.fake.calls("views.publish")
    assert publish.params["user_id"] == rep.user
    view = publish.params["view"]
    assert view["type"] == "home"
    text = _home_text(view)
    assert "Customer intake — 2/24\n[Resume]" in text
    assert "2 · Build trust" in text and "4 · Present value" in text
    assert text.index("2 · Build trust") < text.index("4 · Present value")
    assert "2027 winter uniforms · Daqing <Oilfield> & Co" in text
    assert "Lost deal" not in text
    assert "2027 winter uniforms: Visit Liu Qiang (2026-11-20) ⚠️" in text
    assert "INV-7 · Daqing <Oilfield> & Co · 50,000 CNY — 30 days overdue" in text
    assert "INV-8" not in text
    assert "Your team" not in text  # a rep has no team
    raw = str(view)
    assert "<Oilfield>" not in raw and "&lt;Oilfield&gt; &amp; Co" in raw

    # the manager's Home shows the team
    await boss.open_home()
    team = _home_text(slack.fake.calls("views.publish")[-1].params["view"])
    assert "Your team" in team and "liu: 2 open opportunities, 1 overdue invoices" in team

    # Resume from the Home tab: the question comes back in the DM
    resume = next(b for b in view["blocks"] if b.get("accessory", {}).get("action_id")
                  == "sc_resume")
    await slack.view_action(rep, view, resume["accessory"])
    assert "[2/24] Which industry is Harbin Bus Group in?" in slack.dm_texts(rep.dm)[-1]


async def test_app_home_in_chinese_for_a_new_user(slack: SlackClient) -> None:
    rep = slack.user("U0NEW")
    await rep.command("lang zh")
    await rep.open_home()
    text = _home_text(slack.fake.calls("views.publish")[-1].params["view"])
    assert "未完成的对话" in text and "没有逾期款项。" in text


# ---- modals -----------------------------------------------------------------------------------


async def _open_account_modal(slack: SlackClient, db: Database, rep: SlackUser,
                              boss: SlackUser) -> dict[str, Any]:
    await db.run(_seed, rep, boss)
    response = await rep.command("edit account daqing <oilfield> & co")
    assert response.status_code == 200
    [opened] = slack.fake.calls("views.open")
    assert opened.params["trigger_id"]
    return dict(opened.params["view"])


async def test_edit_account_opens_a_modal_with_the_current_values(
        slack: SlackClient, db: Database) -> None:
    view = await _open_account_modal(slack, db, slack.user(), slack.user("U0BOSS", "wang"))
    blocks = {b["block_id"]: b for b in view["blocks"]}
    assert view["type"] == "modal" and view["callback_id"] == "sc_edit_account"
    assert blocks["name"]["element"]["initial_value"] == "Daqing <Oilfield> & Co"
    assert blocks["name"]["optional"] is False
    assert blocks["industry"]["element"]["initial_option"]["value"] == "oil_gas"
    assert blocks["size_employees"]["element"]["initial_value"] == "12000"
    assert "initial_value" not in blocks["website"]["element"]


async def test_modal_errors_are_shown_inline_and_nothing_is_saved(
        slack: SlackClient, db: Database) -> None:
    rep = slack.user()
    view = await _open_account_modal(slack, db, rep, slack.user("U0BOSS", "wang"))
    response = await rep.submit(view, {"name": "  ", "size_employees": "lots",
                                       "postcode": "1" * 17, "industry": "piracy"})
    assert response.status_code == 200
    body = response.json()
    assert body["response_action"] == "errors"
    assert body["errors"] == {
        "name": "This field is required.",
        "size_employees": "Please send a number, e.g. 200, 1,200 or 1.2万.",
        "postcode": "That is 17 characters; the limit here is 16. Please shorten it.",
        "industry": "Please pick one of the listed options.",
    }
    account = await db.run(lambda s: s.execute(select(Account)).scalar_one())
    assert (account.name, account.size_employees, account.industry) == \
        ("Daqing <Oilfield> & Co", 12000, "oil_gas")
    assert not slack.fake.calls("chat.postMessage")


async def test_modal_refuses_what_the_columns_cannot_hold_and_drops_control_characters(
        slack: SlackClient, db: Database) -> None:
    """The limits are the columns' (store/limits.py): PostgreSQL would refuse each of these
    with an internal error; the form shows the limit on the field and saves nothing."""
    rep = slack.user()
    view = await _open_account_modal(slack, db, rep, slack.user("U0BOSS", "wang"))
    response = await rep.submit(view, {"name": "Daqing Oilfield", "postcode": "1" * 20,
                                       "website": "https://x.cn/" + "w" * 287,
                                       "size_employees": "10000000000"})
    assert response.json()["errors"] == {
        "postcode": "That is 20 characters; the limit here is 16. Please shorten it.",
        "website": "That is 300 characters; the limit here is 255. Please shorten it.",
        "size_employees": "That number is too large to record; it must be below "
                          "2,147,483,648. Please check the zeros.",
    }
    account = await db.run(lambda s: s.execute(select(Account)).scalar_one())
    assert (account.name, account.postcode, account.website) == \
        ("Daqing <Oilfield> & Co", None, None)

    response = await rep.submit(view, {"name": "Daqing\x00 Oil\x1b[2Jfield",
                                       "org_notes": "Line one\x07\nLine two"})
    assert response.status_code == 200 and response.text == ""
    account = await db.run(lambda s: s.execute(select(Account)).scalar_one())
    assert (account.name, account.org_notes) == ("Daqing Oil[2Jfield", "Line one\nLine two")


async def test_modal_submission_saves_every_field_in_one_go(slack: SlackClient,
                                                            db: Database) -> None:
    rep = slack.user()
    view = await _open_account_modal(slack, db, rep, slack.user("U0BOSS", "wang"))
    response = await rep.submit(view, {"name": "Daqing Oilfield", "size_employees": "1.5万",
                                       "nature": "state_owned", "website": "https://dq.cn",
                                       "business": ""})
    assert response.status_code == 200 and response.text == ""  # the modal closes
    account = await db.run(lambda s: s.execute(select(Account)).scalar_one())
    assert (account.name, account.name_key, account.size_employees, account.nature,
            account.website, account.industry, account.business) == (
        "Daqing Oilfield", "daqing oilfield", 15000, "state_owned", "https://dq.cn",
        "oil_gas", None)
    assert "✓ Saved the customer Daqing Oilfield." in slack.dm_texts(rep.dm)


async def test_edit_contact_modal_keeps_multi_choice_and_private_notes(
        slack: SlackClient, db: Database) -> None:
    rep = slack.user()
    await db.run(_seed, rep, slack.user("U0BOSS", "wang"))
    await rep.command("修改 联系人 Liu Qiang")
    [opened] = slack.fake.calls("views.open")
    view = opened.params["view"]
    blocks = {b["block_id"]: b for b in view["blocks"]}
    assert [o["value"] for o in blocks["buying_roles"]["element"]["initial_options"]] == \
        ["evaluator"]
    assert blocks["personal_notes"]["element"]["initial_value"] == "Plays badminton"
    response = await rep.submit(view, {"buying_roles": ["evaluator", "decision_maker"],
                                       "email": "not-an-address"})
    assert response.json()["errors"] == {
        "email": "That doesn't look like an e-mail address, e.g. liu.qiang@example.com."}
    await rep.submit(view, {"buying_roles": ["evaluator", "decision_maker"],
                            "email": "liu@dq.cn"})
    contact = await db.run(lambda s: s.execute(select(Contact)).scalar_one())
    assert (contact.buying_roles, contact.email, contact.personal_notes) == \
        (["decision_maker", "evaluator"], "liu@dq.cn", "Plays badminton")


@pytest.mark.parametrize(("who", "typed", "expected"), [
    ("rep", "edit account Zhongyuan", "I found no customer called “Zhongyuan”."),
    # another rep's record answers exactly as one that does not exist: no "did you mean",
    # no "not yours" (existence is not revealed)
    ("stranger", "edit account Daqing <Oilfield> & Co",
     "I found no customer called “Daqing <Oilfield> & Co”. Usage:"),
    ("stranger", "edit account Daqin", "I found no customer called “Daqin”. Usage:"),
    ("stranger", "edit contact Liu Qiang", "I found no contact called “Liu Qiang”. Usage:"),
])
async def test_edit_refused_with_a_reason(slack: SlackClient, db: Database, who: str,
                                          typed: str, expected: str) -> None:
    rep, boss = slack.user(), slack.user("U0BOSS", "wang")
    await db.run(_seed, rep, boss)
    person = rep if who == "rep" else slack.user("U0OTHER", "zhang")
    await person.command(typed)
    assert not slack.fake.calls("views.open")
    [note] = slack.fake.calls("chat.postEphemeral")
    assert expected in plain(note.params["text"])
    assert "Did you mean" not in plain(note.params["text"])
    assert note.params["channel"] == CHANNEL


async def test_edit_finds_a_record_by_the_partial_names_lookups_take(
        slack: SlackClient, db: Database) -> None:
    rep = slack.user()
    await db.run(_seed, rep, slack.user("U0BOSS", "wang"))
    await rep.command("edit account daqing")
    [opened] = slack.fake.calls("views.open")
    assert opened.params["view"]["callback_id"] == "sc_edit_account"


async def test_an_admin_edits_a_contact_without_seeing_or_erasing_personal_notes(
        slack: SlackClient, db: Database) -> None:
    rep, admin = slack.user(), slack.user("U0ADMIN", "zhao")
    await db.run(_seed, rep, slack.user("U0BOSS", "wang"))
    await db.run(lambda s: _speaker(s, admin, role="admin"))
    await admin.command("edit contact Liu Qiang")
    [opened] = slack.fake.calls("views.open")
    view = opened.params["view"]
    blocks = {b["block_id"] for b in view["blocks"]}
    assert "personal_notes" not in blocks and "work_notes" in blocks
    assert "Plays badminton" not in str(view)
    await admin.submit(view, {"title": "Chief engineer"})
    contact = await db.run(lambda s: s.execute(select(Contact)).scalar_one())
    assert (contact.title, contact.personal_notes) == ("Chief engineer", "Plays badminton")


async def test_the_manager_may_edit_the_reps_account_from_home(slack: SlackClient,
                                                               db: Database) -> None:
    rep, boss = slack.user(), slack.user("U0BOSS", "wang")
    ids = await db.run(_seed, rep, boss)
    await rep.open_home()
    view = slack.fake.calls("views.publish")[-1].params["view"]
    edit = next(b for b in view["blocks"] if b.get("accessory", {}).get("action_id")
                == "sc_edit")
    assert edit["accessory"]["value"] == f"account:{ids['account_id']}"
    await slack.view_action(boss, view, edit["accessory"])
    [opened] = slack.fake.calls("views.open")
    assert opened.params["view"]["callback_id"] == "sc_edit_account"
    response = await boss.submit(opened.params["view"], {"size_employees": "13000"})
    assert response.text == ""
    size = await db.run(lambda s: s.execute(select(Account.size_employees)).scalar_one())
    assert size == 13000



# ---- the Edit button on record cards, and Home's Resume ---------------------------------------


def _edit_button(blocks: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    block = next(b for b in blocks if b.get("block_id") == "sc_record")
    [button] = block["elements"]
    return block, button


async def test_the_account_card_has_an_edit_button_that_opens_the_filled_modal(
        slack: SlackClient, db: Database) -> None:
    rep, boss = slack.user(), slack.user("U0BOSS", "wang")
    ids = await db.run(_seed, rep, boss)
    await rep.command("account daqing")
    [card] = slack.fake.calls("chat.postEphemeral")
    block, button = _edit_button(card.params["blocks"])
    assert (button["action_id"], button["text"]["text"], button["value"]) == \
        ("sc_edit", "Edit", f"account:{ids['account_id']}")

    await slack.action(rep, card, block, button, button, ephemeral=True)
    [opened] = slack.fake.calls("views.open")
    view = opened.params["view"]
    assert view["callback_id"] == "sc_edit_account"
    fields = {b["block_id"]: b["element"] for b in view["blocks"]}
    assert fields["name"]["initial_value"] == "Daqing <Oilfield> & Co"
    assert fields["size_employees"]["initial_value"] == "12000"
    assert fields["industry"]["initial_option"]["value"] == "oil_gas"

    # saving validates every field, inline, and saves nothing until all are right
    bad = await rep.submit(view, {"name": "", "size_employees": "lots"})
    errors = bad.json()["errors"]
    assert set(errors) == {"name", "size_employees"}
    assert errors["name"] == "This field is required."
    assert await db.run(lambda s: s.execute(select(Account.size_employees)).scalar_one()) \
        == 12000
    good = await rep.submit(view, {"size_employees": "13,000"})
    assert good.text == ""
    assert await db.run(lambda s: s.execute(select(Account.size_employees)).scalar_one()) \
        == 13000
    assert "✓ Saved the customer Daqing <Oilfield> & Co." in slack.dm_texts(rep.dm)


async def test_the_card_edit_button_checks_permissions_and_speaks_chinese(
        slack: SlackClient, db: Database) -> None:
    rep, boss = slack.user(), slack.user("U0BOSS", "wang")
    await db.run(_seed, rep, boss)
    other = slack.user("U0OTHER", "zhang")
    await rep.command("lang zh")
    await rep.command("account daqing share")  # shared in the channel: anyone sees the button
    [card] = [c for c in slack.fake.calls("chat.postMessage") if c.params["channel"] == CHANNEL]
    block, button = _edit_button(card.params["blocks"])
    assert button["text"]["text"] == "编辑"

    await slack.action(other, card, block, button, button)
    assert not slack.fake.calls("views.open")
    # the refusal goes to the clicker alone (their DM), never into the channel
    assert [c.params["channel"] for c in slack.fake.calls("chat.postMessage")] == \
        [CHANNEL, other.dm]
    assert "There is no such customer for you to edit" in slack.dm_texts(other.dm)[-1]


async def test_a_double_click_on_home_resume_resumes_and_posts_once(
        slack: SlackClient) -> None:
    rep = slack.user()
    await rep.command("intake")
    await rep.say("Harbin Bus Group")
    await rep.open_home()
    view = slack.fake.calls("views.publish")[-1].params["view"]
    resume = next(b["accessory"] for b in view["blocks"]
                  if b.get("accessory", {}).get("action_id") == "sc_resume")
    before = len(slack.fake.calls())
    await slack.view_action(rep, view, resume)
    await slack.view_action(rep, view, resume)
    posted = slack.dm_texts(rep.dm, since=before)
    assert len(posted) == 1 and "Which industry is Harbin Bus Group in?" in posted[0]

    # a freshly published Home (opened again) resumes again
    await rep.open_home()
    again = slack.fake.calls("views.publish")[-1].params["view"]
    await slack.view_action(rep, again, resume)
    assert len(slack.dm_texts(rep.dm, since=before)) == 2
