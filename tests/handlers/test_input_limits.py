"""Input the database cannot hold, typed into a dialog in the terminal (issue 14, item 10).

Each case plays the intake through the console (`Console` + `Coach` wired as bot/app.py does) on
SQLite and on PostgreSQL. PostgreSQL refuses a value longer than its `varchar(n)`, a number
beyond its `numeric(18, 2)` and any NUL; SQLite keeps them all. So the tests assert what the rep
is told — the limit of the column, in their language, and the same question again — and what is
stored: nothing of the refused answer, everything answered before it.
"""

from __future__ import annotations

import io

import pytest

from bot.coach import Coach
from bot.commands import Registry, load_commands
from handlers.console import Console
from store.db import Database
from tests import scenarios as sc
from tests.conversation_checks import (
    FakeClock,
    Transcript,
    check_no_failure,
    converse,
    engine,
    question,
    stored,
)

EN_ANSWERS = [line for line in sc.INTAKE_EN if line != "tip"]


def answers_through(answer: str) -> list[str]:
    """INTAKE_EN's answers (after `intake`, without `tip`) up to and including `answer`."""
    return EN_ANSWERS[1:EN_ANSWERS.index(answer) + 1]


def answers_before(answer: str) -> list[str]:
    return EN_ANSWERS[1:EN_ANSWERS.index(answer)]


QUANTITY = "10000000000000000"  # 10^16: numeric(18, 2) holds less

# (answers before, the answer, what the reply says in en and zh, the question asked again)
CASES = [
    pytest.param(answers_through("Daqing, Heilongjiang"), "1" * 20,
                 "That is 20 characters; the limit here is 16.",
                 "这段内容有 20 个字符，这里最多 16 个", "Postcode?", id="postcode-20"),
    pytest.param(answers_through("163000"), "https://example.com/" + "w" * 280,
                 "That is 300 characters; the limit here is 255.",
                 "这段内容有 300 个字符，这里最多 255 个", "Website?", id="website-300"),
    pytest.param(answers_before("8000"), QUANTITY,
                 "That number is too large to record; it must be below "
                 "10,000,000,000,000,000.",
                 "这个数字太大，无法记录，必须小于 10,000,000,000,000,000",
                 "How many units did they buy last time?", id="quantity-1e16"),
    pytest.param(answers_before("138 0000 0000"), "1" * 200,
                 "That is 200 characters; the limit here is 64.",
                 "这段内容有 200 个字符，这里最多 64 个", "How do you reach Liu Qiang",
                 id="phone-200"),
    pytest.param(answers_before("Down jackets and trousers"), "长" * 500,
                 "That is 500 characters; the limit here is 255.",
                 "这段内容有 500 个字符，这里最多 255 个", "Which of our products or services",
                 id="product-500"),
]


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize(("before", "answer", "en", "zh", "asked_again"), CASES)
async def test_an_answer_its_column_cannot_hold_is_refused_and_asked_again(
        db: Database, lang: str, before: list[str], answer: str, en: str, zh: str,
        asked_again: str) -> None:
    chat = await converse(db, ["intake", *before, answer], lang=lang if lang == "zh" else None)
    reply = chat.reply(-1)
    check_no_failure(chat.text, answer[:20])
    assert (en if lang == "en" else zh) in reply
    if lang == "en":
        assert asked_again in question(reply)
    assert answer[:40] not in reply  # not echoed back
    rows = await stored(db)
    [account] = rows.accounts
    # what was answered before is kept; the refused answer is nowhere
    assert account["name"] == "Daqing Oilfield Company"
    assert account["size_employees"] == 12000
    assert answer not in repr(rows)


async def test_refused_then_answered_keeps_everything(db: Database) -> None:
    before = answers_through("Daqing, Heilongjiang")
    chat = await converse(db, ["intake", *before, "1" * 20, "163000"])
    assert "Website?" in question(chat.reply(-1))
    [account] = (await stored(db)).accounts
    assert account["postcode"] == "163000"
    assert account["address"] == "Daqing, Heilongjiang"


NUL_CASES = [
    # (answers before, the answer with a NUL, what is stored, the column)
    pytest.param([], "Daqing\x00 Oilfield Company", "Daqing Oilfield Company", "name",
                 id="name"),
    pytest.param(answers_before("Oil and gas production"), "Oil\x00 and gas",
                 "Oil and gas", "business", id="business"),
    pytest.param(answers_before(sc.INTAKE_EN_ACCOUNT["org_notes"]),
                 "Procurement\x00 reports\x07 to\x1b[2J the GM.\tSee the chart.",
                 "Procurement reports to[2J the GM.\tSee the chart.", "org_notes", id="org-notes"),
]


@pytest.mark.parametrize(("before", "answer", "saved", "column"), NUL_CASES)
async def test_nul_and_control_characters_are_removed_on_the_way_in(
        db: Database, before: list[str], answer: str, saved: str, column: str) -> None:
    transcript = await _chat(db, ["intake", *before, answer])
    check_no_failure(transcript.text, column)
    assert "\x00" not in transcript.text and "\x1b" not in transcript.text
    assert "\x07" not in transcript.text
    rows = await stored(db)
    [account] = rows.accounts
    assert account[column] == saved
    # the next question was asked: the answer was taken
    assert "[" in transcript.reply(-1)


async def test_control_characters_in_stored_text_never_reach_the_terminal(
        db: Database) -> None:
    """A name that came in by another way (an old import) with an ESC sequence and a BEL is
    shown without them; the console's own formatting is not affected."""
    from sqlalchemy import update

    from store.models import Account

    await converse(db, ["intake", "Daqing Oilfield Company", "cancel"])

    def poison(session: object) -> None:
        session.execute(update(Account).values(  # type: ignore[attr-defined]
            name="Daqing\x1b]0;owned\x07\x1b[2J Oilfield"))

    await db.run(poison)
    transcript = await _chat(db, ["/account Daqing"], registry=load_commands())
    assert "Daqing]0;owned[2J Oilfield" in transcript.text, transcript.text
    assert "\x1b" not in transcript.text and "\x07" not in transcript.text


async def _chat(db: Database, lines: list[str], registry: Registry | None = None
                ) -> Transcript:
    """`converse`, for lines that are not echoed as typed (their control characters are not
    written to the terminal)."""
    renderer, dialog_engine = engine()
    coach = Coach(db, dialog_engine, renderer, clock=FakeClock(), registry=registry)
    stdout = io.StringIO()
    stdin = io.StringIO("".join(f"{line}\n" for line in lines))
    await Console(coach, user="rep1", stdin=stdin, stdout=stdout, interactive=False).run()
    transcript = Transcript.parse(stdout.getvalue())
    assert len(transcript.turns) == len(lines), transcript.text
    return transcript
