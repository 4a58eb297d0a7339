"""Registered commands (bot/commands/): discovery, help, claims on flow commands, `channel`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.app import build_engine
from bot.coach import Coach
from bot.commands import Claim, CommandRequest, Registry, load_commands
from dialogs.messages import Inbound, Outbound
from store.db import Database
from store.models import TeamChannel, User


def make_coach(db: Database, admins: tuple[str, ...] = (),
               registry: Registry | None = None) -> Coach:
    renderer, engine = build_engine()
    return Coach(db, engine, renderer, clock=lambda: datetime(2026, 11, 27, 9, tzinfo=UTC),
                 registry=registry or load_commands(), admins=admins)


def typed(user: str, text: str, *, chat: str = "channel", chat_key: str | None = "C1",
          chat_name: str | None = "sales-team") -> Inbound:
    return Inbound(platform="slack", org_key="T1", user_key=user, text=text, user_name=user,
                   chat=chat, chat_key=chat_key, chat_name=chat_name)


def bindings(session: Session) -> list[tuple[str, bool]]:
    rows = session.execute(select(TeamChannel.channel_id, TeamChannel.active)
                           .order_by(TeamChannel.channel_id))
    return [(r[0], r[1]) for r in rows]


def roles(session: Session) -> dict[str, str]:
    return {r[0]: r[1] for r in session.execute(select(User.display_name, User.role))}


async def test_help_lists_flows_and_registered_commands_in_both_languages(db: Database) -> None:
    coach = make_coach(db)
    text = "\n".join(m.text for m in (await coach.handle(typed("u1", "help"))).messages)
    for name in ("intake", "qualify", "contact", "channel", "resume", "lang", "help"):
        assert f"<code>{name}</code>" in text
    assert text.index("intake") < text.index("channel") < text.index("<code>help</code>")
    await coach.handle(typed("u1", "lang zh"))
    zh = "\n".join(m.text for m in (await coach.handle(typed("u1", "帮助"))).messages)
    assert "团队频道" in zh


async def test_without_admins_the_first_to_bind_becomes_admin_and_others_are_refused(
        db: Database) -> None:
    coach = make_coach(db)
    first = await coach.handle(typed("u1", "/channel"))
    assert "now the team channel" in first.messages[0].text
    assert "sales-team" in first.messages[0].text
    other = await coach.handle(typed("u2", "/channel", chat_key="C2"))
    assert other.messages[0].kind == "error" and "Only an admin" in other.messages[0].text
    assert await db.run(bindings) == [("C1", True)]
    assert (await db.run(roles))["u1"] == "admin"
    assert (await db.run(roles))["u2"] == "rep"


async def test_binding_another_channel_retires_the_old_one(db: Database) -> None:
    coach = make_coach(db, admins=("boss",))
    refused = await coach.handle(typed("u1", "channel"))  # admins listed: u1 is not one
    assert refused.messages[0].kind == "error"
    await coach.handle(typed("boss", "channel"))
    await coach.handle(typed("boss", "channel", chat_key="C2"))
    await coach.handle(typed("boss", "channel", chat_key="C1"))
    assert await db.run(bindings) == [("C1", True), ("C2", False)]


async def test_channel_in_a_private_chat_says_where_to_type_it(db: Database) -> None:
    coach = make_coach(db)
    reply = await coach.handle(typed("u1", "channel", chat="private", chat_key=None))
    assert reply.messages[0].kind == "error" and "team channel or group" in reply.messages[0].text
    assert await db.run(bindings) == []


def _peek(req: CommandRequest) -> Sequence[Outbound]:
    return [Outbound(f"peeked at {req.arg}")]


def _peek_registry() -> Registry:
    """A command that claims `intake ?...` (in any language) and nothing else."""
    registry = Registry()
    registry.add("peek", _peek, claims=(Claim("intake", lambda arg: arg.startswith("?")),))
    return registry


def test_the_registry_names_the_command_that_claims_an_invocation() -> None:
    registry = _peek_registry()
    assert registry.claimant("intake", "?acme") == "peek"
    assert registry.claimant("intake", "Acme") is None
    assert registry.claimant("intake", "") is None
    assert registry.claimant("qualify", "?acme") is None
    assert load_commands().claimant("spin", "@li") == "spinmix"
    assert load_commands().claimant("spin", "Daqing") is None


async def test_a_command_claims_a_flow_commands_invocation_when_its_argument_matches(
        db: Database) -> None:
    coach = make_coach(db, registry=_peek_registry())
    claimed = await coach.handle(typed("u1", "intake ?acme", chat="private"))
    assert [m.text for m in claimed.messages] == ["peeked at ?acme"]
    slashed = await coach.handle(typed("u1", "/intake ?x", chat="private"))
    assert [m.text for m in slashed.messages] == ["peeked at ?x"]
    await coach.handle(typed("u1", "lang zh", chat="private"))
    zh = await coach.handle(typed("u1", "建档 ?acme", chat="private"))
    assert [m.text for m in zh.messages] == ["peeked at ?acme"]


@pytest.mark.parametrize("text", ["intake", "intake Acme", "qualify ?acme"])
async def test_a_claim_leaves_other_arguments_and_other_flow_words_to_the_dialog(
        db: Database, text: str) -> None:
    coach = make_coach(db, registry=_peek_registry())
    opened = await coach.handle(typed("u1", text, chat="private"))
    assert not any(m.text.startswith("peeked") for m in opened.messages)
    assert any(m.kind == "question" for m in opened.messages)  # the dialog asks its first


@pytest.mark.parametrize("word", ["help", "channel"])
def test_a_claim_on_a_word_that_is_no_flow_command_is_refused(db: Database, word: str) -> None:
    registry = load_commands()
    registry.add("peek", _peek, claims=(Claim(word, lambda arg: True),))
    with pytest.raises(ValueError, match="not a flow command"):
        make_coach(db, registry=registry)
