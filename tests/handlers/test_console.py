"""The terminal front end: whole conversations in-process and through the real `salescoach chat`.

In-process tests play a script through `converse` (tests/conversation_checks.py: the app wired
the way `bot/app.py` does, a fake clock, `Console` on `io.StringIO`) on the `db` fixture (SQLite
and, when configured, PostgreSQL), and check the transcript and the rows. Subprocess tests run the
real entry point on a SQLite file in a temporary directory, including a SIGKILL between two turns
followed by `resume` in a new process.
"""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.orm import Session

from dialogs import parsing
from store.db import Database
from store.models import Account
from tests import scenarios as sc
from tests.conversation_checks import (
    SCENARIOS,
    TODAY,
    Scenario,
    check_intake_rows,
    check_intake_transcript,
    check_no_failure,
    converse,
    imminent_date,
    next_friday,
    only,
    question,
    salescoach_cmd,
    salescoach_env,
    sql,
    stored,
)

# ---- the whole intake, in-process -------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_intake_in_process_transcript_and_rows(db: Database, scenario: Scenario) -> None:
    chat = await converse(db, scenario.script)
    check_intake_transcript(scenario, chat.text, chat.turns)
    # here the first question is the whole question block of the reply to the start command
    assert question(chat.reply_to(scenario.start)) == scenario.first_question
    check_intake_rows(await stored(db), scenario)


# ---- bad input, in-process --------------------------------------------------------------------

FIRST_Q = sc.INTAKE_EN_FIRST_QUESTION
EN_ANSWERS = [line for line in sc.INTAKE_EN if line != "tip"]


def answers_before(answer: str) -> list[str]:
    """INTAKE_EN's answers (after `intake`, without `tip`) up to, not including, `answer`."""
    return EN_ANSWERS[1:EN_ANSWERS.index(answer)]

COMMANDS = ("intake", "qualify", "contact", "resume", "lang", "help")


@pytest.mark.parametrize("before", [[], ["intake"]], ids=["no-dialog", "in-dialog"])
async def test_unknown_command_lists_the_commands(db: Database, before: list[str]) -> None:
    chat = await converse(db, [*before, "/frobnicate", "Daqing Oilfield Company"])
    reply = chat.reply(len(before))
    assert "I don't know “/frobnicate”." in reply
    assert "What I can do" in reply
    for name in COMMANDS:
        assert f"• {name} — " in reply, name
    if before:
        # the dialog is untouched: the next line answers the question that was open
        assert "[2/24] Which industry is Daqing Oilfield Company in?" in chat.reply(-1)
        rows = await stored(db)
        assert [a["name"] for a in rows.accounts] == ["Daqing Oilfield Company"]


@pytest.mark.parametrize("blank", ["", "   ", "\t"], ids=["empty", "spaces", "tab"])
async def test_empty_line_asks_for_an_answer_and_repeats_the_question(
        db: Database, blank: str) -> None:
    chat = await converse(db, ["intake", blank])
    reply = chat.reply(1)
    assert reply.startswith("Please type an answer.")
    assert question(reply) == FIRST_Q
    rows = await stored(db)
    assert rows.accounts == []


LONG_CASES = [
    # (answers before, the long answer's length, stated limit, the question it stays on)
    pytest.param([], 10_000, "200", FIRST_Q, id="name-10000"),
    pytest.param([], 10_001, "10,000", FIRST_Q, id="name-10001"),
    pytest.param(answers_before(sc.INTAKE_EN_ACCOUNT["org_notes"]), 10_000, "4,000",
                 "[15/27] How do these departments report to and work with each other",
                 id="org-notes-10000"),
]


@pytest.mark.parametrize(("before", "length", "limit", "same_question"), LONG_CASES)
async def test_over_long_answer_is_refused_with_its_limit_and_nothing_saved(
        db: Database, before: list[str], length: int, limit: str, same_question: str) -> None:
    long_text = ("长" + "x" * 9) * (length // 10) + "y" * (length % 10)
    assert len(long_text) == length
    chat = await converse(db, ["intake", *before, long_text])
    reply = chat.reply(-1)
    assert f"That is {length:,} characters; the limit here is {limit}." in reply
    assert question(reply).startswith(same_question)
    assert long_text[:50] not in reply  # not echoed back in the reply
    rows = await stored(db)
    if not before:
        assert rows.accounts == []
    else:
        [account] = rows.accounts
        assert account["org_notes"] is None
        assert account["purchase_departments"] == ["procurement", "finance", "user_dept"]


TRICKY_NAMES = [
    pytest.param("Liu 强 🚀", id="emoji-mixed"),
    pytest.param("Robert'); DROP TABLE accounts;--", id="sql"),
    pytest.param("{{ 7*7 }}", id="template"),
    pytest.param("<b>x</b>", id="html"),
    pytest.param("{% if true %}T{% endif %} & &amp; \\ %s", id="jinja-block-entities"),
]


@pytest.mark.parametrize("name", TRICKY_NAMES)
async def test_tricky_customer_name_is_stored_and_shown_verbatim(db: Database,
                                                               name: str) -> None:
    script = [name if line == "Daqing Oilfield Company" else line for line in sc.INTAKE_EN]
    chat = await converse(db, script)

    assert question(chat.reply(1)).startswith(f"[2/24] Which industry is {name} in?")
    assert f"• Customer: {name}\n" in chat.text  # in both summaries
    assert chat.text.count(f"• Customer: {name}\n") == 2
    assert sc.INTAKE_EN_VERDICT in chat.reply(-1)
    if "{{" in name:
        assert "49" not in chat.text
    if "<b>" in name:
        assert "&lt;" not in chat.text and "&gt;" not in chat.text

    rows = await stored(db)
    assert [a["name"] for a in rows.accounts] == [name]
    assert [o["name"] for o in rows.opportunities] == ["2027 winter uniforms"]

    def tables(session: Session) -> tuple[set[str], int]:
        names = set(inspect(session.connection()).get_table_names())
        count = session.scalar(select(func.count()).select_from(Account))
        return names, int(count or 0)

    names, count = await db.run(tables)
    assert "accounts" in names
    assert count == 1


async def test_emoji_and_mixed_text_in_a_contact_are_stored_verbatim(db: Database) -> None:
    contact = "Liu 强 🚀"
    notes = "Likes 乒乓球 🏓, daughter's 高考 next year — “important”"
    script = list(sc.INTAKE_EN)
    script[script.index("Liu Qiang")] = contact
    script[script.index("Plays badminton; daughter sits the gaokao next year.")] = notes
    chat = await converse(db, script)
    assert f"[17/27] What is {contact}'s job title?" in chat.text
    assert f"• Contact 1 · Personal notes (private): {notes}\n" in chat.text
    rows = await stored(db)
    assert rows.contacts[0]["name"] == contact
    assert rows.contacts[0]["personal_notes"] == notes


async def test_ambiguous_money_is_asked_again(db: Database) -> None:
    before = answers_before("¥2.4m")
    chat = await converse(db, ["intake", *before, "3,5", "35"])
    reply = chat.reply(-2)
    assert "Did you mean 3.5 or 35?" in reply
    assert question(reply).startswith("[9/27] What did that purchase cost them in total?")
    assert question(chat.reply(-1)).startswith("[10/27] How satisfied were they")
    rows = await stored(db)
    assert rows.accounts[0]["last_purchase_amount"] == Decimal("35")
    assert rows.accounts[0]["last_purchase_currency"] == "CNY"


QUALIFY_TO_DATE = ["intake", "Daqing Oilfield Company", "cancel", "qualify",
                   "Daqing Oilfield Company", "2027 winter uniforms", "skip", "1"]


@pytest.mark.parametrize(("typed", "error"), [
    ("2026-02-30", "2026-02-30 isn't a real date."),
    ("the day after never", "Please send a date, e.g."),
])
async def test_impossible_date_is_asked_again(db: Database, typed: str, error: str) -> None:
    chat = await converse(db, [*QUALIFY_TO_DATE, typed, "2027-02-28"])
    asked = question(chat.reply(-3))
    assert asked.startswith("[5/9] When do they plan to buy?")
    reply = chat.reply(-2)
    assert error in reply
    assert question(reply) == asked
    assert question(chat.reply(-1)).startswith("[6/9] What is their budget?")
    rows = await stored(db)
    assert [o["expected_close"] for o in rows.opportunities] == [date(2027, 2, 28)]


async def test_lang_zh_mid_dialog_asks_the_same_question_in_chinese(db: Database) -> None:
    chat = await converse(db, ["intake", "Daqing Oilfield Company", "lang zh", "石油石化"])
    assert question(chat.reply(1)).startswith("[2/24] Which industry is Daqing Oilfield Company")
    reply = chat.reply(2)
    assert reply.startswith("语言：中文。")
    block = question(reply)
    assert block.startswith("[2/24] Daqing Oilfield Company属于哪个行业？")
    assert "  1. 石油石化" in block and "  14. 其他" in block
    assert question(chat.reply(3)).startswith("[3/24] 客户的单位性质是什么？")
    rows = await stored(db)
    assert rows.accounts[0]["industry"] == "oil_gas"


async def test_cancel_closes_the_dialog_and_keeps_the_account(db: Database) -> None:
    chat = await converse(db, ["intake", "Daqing Oilfield Company", "oil", "cancel", "resume",
                               "Acme Steel"])
    assert chat.reply(3) == ("Cancelled the customer intake. "
                             "Everything you already answered stays saved.")
    assert chat.reply(4) == "There is nothing to resume. Type intake to start."
    assert chat.reply(5) == "There is no dialog open. Type intake to start one, or help."
    rows = await stored(db)
    assert only(rows.accounts, ["name", "industry", "nature"]) == [
        {"name": "Daqing Oilfield Company", "industry": "oil_gas", "nature": None}]
    assert rows.dialogs == [("intake", "cancelled")]


async def test_edit_changes_an_earlier_answer_and_returns_to_the_open_question(
        db: Database) -> None:
    chat = await converse(db, ["intake", "Daqing Oilfield Company", "oil", "1", "edit", "2",
                               "mining", "12,000"])
    open_question = question(chat.reply(3))
    assert open_question.startswith("[4/24] Roughly how many employees")
    listing = chat.reply(4)
    assert listing.startswith("Which answer do you want to change? Send its number.")
    assert "  1. Customer: Daqing Oilfield Company" in listing
    assert "  2. Industry: Oil & gas" in listing
    assert "  3. Ownership: State-owned enterprise" in listing
    editing = chat.reply(5)
    assert editing.startswith("[2/24] Which industry is Daqing Oilfield Company in?")
    assert "Current answer: Oil & gas" in editing
    back_to = chat.reply(6)
    assert back_to.startswith("✓ Updated.")
    assert question(back_to) == open_question
    assert question(chat.reply(7)).startswith("[5/24] What is its main business?")
    rows = await stored(db)
    assert only(rows.accounts, ["industry", "nature", "size_employees"]) == [
        {"industry": "mining", "nature": "state_owned", "size_employees": 12000}]


async def test_back_on_the_first_question_has_nowhere_to_go(db: Database) -> None:
    chat = await converse(db, ["intake", "back"])
    reply = chat.reply(1)
    assert reply.startswith("This is the first question; there is nothing to go back to.")
    assert question(reply) == FIRST_Q


async def test_edit_to_no_clears_the_answers_it_hides(db: Database) -> None:
    before = answers_before(sc.INTAKE_EN_ACCOUNT["address"])  # last purchase answered
    chat = await converse(db, ["intake", *before, "edit", "7", "no"])
    assert "  7. Bought before: Yes" in chat.reply(-3)
    reply = chat.reply(-1)
    assert reply.startswith("✓ Updated.")
    assert question(reply).startswith("[8/24] The customer's address?")  # 3 questions fewer
    rows = await stored(db)
    assert only(rows.accounts, ["last_purchase_qty", "last_purchase_amount",
                                "last_purchase_currency", "last_purchase_satisfaction"]) == [
        {"last_purchase_qty": None, "last_purchase_amount": None,
         "last_purchase_currency": None, "last_purchase_satisfaction": None}]


@pytest.mark.parametrize(("before", "answer", "column", "next_question"), [
    pytest.param(answers_before("Liu Qiang"), "Lang Ping", "contact", "[17/27] What is Lang",
                 id="contact-Lang-Ping"),
    pytest.param(answers_before("Oil and gas production"), "Help desk services", "business",
                 "[6/24] How did you find", id="business-help-desk"),
    pytest.param(answers_before("Oil and gas production"), "Continue to grow", "business",
                 "[6/24] How did you find", id="business-continue"),
])
async def test_answer_starting_with_a_command_word_is_an_answer(
        db: Database, before: list[str], answer: str, column: str, next_question: str) -> None:
    chat = await converse(db, ["intake", *before, answer])
    assert question(chat.reply(-1)).startswith(next_question)
    rows = await stored(db)
    if column == "contact":
        assert [c["name"] for c in rows.contacts] == [answer]
    else:
        assert rows.accounts[0][column] == answer


async def test_contact_name_question_is_numbered(db: Database) -> None:
    chat = await converse(db, sc.INTAKE_EN[:sc.INTAKE_EN.index("Liu Qiang") + 1])
    assert "[16/27] Contact 1: what is their name?" in chat.text


# ---- the real entry point, in a subprocess (SQLite) -----------------------------------------


def run_chat(cwd: Path, lines: list[str], *args: str,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        salescoach_cmd("chat", "--user", "x", *args), cwd=cwd, env=salescoach_env(), text=True,
        encoding="utf-8", input="".join(f"{line}\n" for line in lines), capture_output=True,
        timeout=timeout,
    )


EN_DATE = sc.INTAKE_EN_OPPORTUNITY["expected_close"].isoformat()


def for_today(script: list[str]) -> tuple[list[str], str]:
    """`script` with INTAKE_EN's fixed purchase date moved to 120 days after the real today.

    A subprocess runs on the wall clock; this keeps "imminent" (within 365 days) true on any
    day the suite runs. Returns the script and the date it now carries.
    """
    when = imminent_date()
    return [when if line == EN_DATE else line for line in script], when


@pytest.mark.parametrize(("script", "verdict", "account", "contacts", "competitor", "opp"), [
    pytest.param(sc.INTAKE_EN, sc.INTAKE_EN_VERDICT, "Daqing Oilfield Company",
                 [("Liu Qiang", '["designer", "evaluator"]', "owl"),
                  ("Zhao Min", '["decision_maker"]', "tiger")],
                 "Bosideng", ("2027 winter uniforms", "opportunity", "trust", 12000.0, "CNY"),
                 id="en"),
    pytest.param(sc.INTAKE_ZH, sc.INTAKE_ZH_VERDICT, "北京公交集团",
                 [("王建国", '["decision_maker", "evaluator"]', "owl"),
                  ("李红", '["initiator"]', "tiger")],
                 "波司登", ("2027年冬季工装", "keep_in_touch", "keep_in_touch", None, None),
                 id="zh"),
])
def test_salescoach_chat_piped(tmp_path: Path, script: list[str], verdict: str, account: str,
                               contacts: list[tuple[str, str, str]], competitor: str,
                               opp: tuple[Any, ...]) -> None:
    chinese = script is sc.INTAKE_ZH
    script, when = for_today(script)
    done = run_chat(tmp_path, script)
    assert done.returncode == 0, done.stderr
    assert verdict in done.stdout
    check_no_failure(done.stdout + done.stderr)
    dbfile = tmp_path / "salescoach.db"
    assert dbfile.exists()

    assert sql(dbfile, "SELECT name FROM accounts") == [(account,)]
    got = sql(dbfile, "SELECT c.name, c.buying_roles, c.comm_style FROM contacts c "
                      "JOIN accounts a ON a.id = c.account_id ORDER BY c.created_at, c.name")
    assert [(n, r.replace(" ", ""), s) for n, r, s in got] == \
        [(n, r.replace(" ", ""), s) for n, r, s in contacts]
    assert sql(dbfile, "SELECT competitor FROM competitor_notes") == [(competitor,)]
    [(name, v, stage, amount, currency, close)] = sql(
        dbfile, "SELECT name, verdict, stage, amount, currency, expected_close "
                "FROM opportunities")
    assert (name, v, stage, amount, currency) == opp
    if chinese:  # 下周五, on the day the process ran
        today = datetime.now(UTC).date()
        assert close in {next_friday(today).isoformat(),
                         next_friday(today - timedelta(days=1)).isoformat()}
    else:
        assert close == when


def test_chat_lang_zh_greets_in_chinese(tmp_path: Path) -> None:
    done = run_chat(tmp_path, [], "--lang", "zh")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("x，您好！我是您的大客户销售教练")
    assert "Hi x" not in done.stdout


def test_chat_lang_fr_is_refused(tmp_path: Path) -> None:
    done = run_chat(tmp_path, ["intake"], "--lang", "fr")
    assert done.returncode != 0
    assert "--lang must be en or zh" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


# ---- killed between two turns, resumed in a new process -------------------------------------


class Chat:
    """A live `salescoach chat` with its stdin as a pipe; stdout read by a thread."""

    def __init__(self, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            salescoach_cmd("chat", "--user", "x"), cwd=cwd, env=salescoach_env(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            encoding="utf-8", bufsize=1,
        )
        self.out = ""
        self._chunks: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, ""):
            self._chunks.put(line)
        self._chunks.put(None)

    def wait_for(self, marker: str, *, since: int = 0, timeout: float = 30) -> str:
        """Read until `marker` appears in the output after offset `since`; fail on timeout."""
        deadline = time.monotonic() + timeout
        while marker not in self.out[since:]:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"timed out waiting for {marker!r}; output so far:\n{self.out}")
            try:
                chunk = self._chunks.get(timeout=left)
            except queue.Empty:
                continue
            if chunk is None:
                pytest.fail(f"the process ended before {marker!r}; output:\n{self.out}")
            self.out += chunk
        return self.out[since:]

    def say(self, line: str, expect: str) -> str:
        """Type one line and wait until its echo and then `expect` have been printed."""
        assert self.proc.stdin is not None
        since = len(self.out)
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        echoed = self.wait_for(f"› {line}\n", since=since)
        offset = since + echoed.index(f"› {line}\n")
        return self.wait_for(expect, since=offset)

    def finish(self, timeout: float = 60) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        while True:
            try:
                chunk = self._chunks.get_nowait()
            except queue.Empty:
                break
            if chunk is not None:
                self.out += chunk
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _question_at(output: str, marker: str) -> str:
    """The last question with progress `marker` in `output`: its line and options/hint."""
    start = output.rindex(marker)
    end = output.find("\n\n", start)
    return output[start:end if end >= 0 else None]


def _feed_until_killed(tmp_path: Path, lines: list[str], marker: str) -> str:
    """Type `lines` one at a time; after the last one, wait for `marker`, then SIGKILL."""
    chat = Chat(tmp_path)
    try:
        chat.wait_for("Type intake to record a new customer")
        for line in lines[:-1]:
            chat.say(line, "\n\n")
        chat.say(lines[-1], marker)
        chat.wait_for("\n\n", since=chat.out.rindex(marker))  # the whole question is out
        waiting_on = _question_at(chat.out, marker)
        chat.proc.kill()
        assert chat.proc.wait(timeout=10) == -9
        return waiting_on
    finally:
        chat.close()


KILL_POINTS = [
    pytest.param(sc.INTAKE_EN.index("Oil and gas production"), "[5/",
                 "[5/24] What is its main business?", id="account-questions"),
    pytest.param(sc.INTAKE_EN.index("back"), "[28/",
                 "[28/38] What is Zhao Min's job title?", id="inside-contacts"),
]


@pytest.mark.parametrize(("upto", "marker", "expected"), KILL_POINTS)
def test_resume_after_kill_asks_the_same_question(tmp_path: Path, upto: int, marker: str,
                                                  expected: str) -> None:
    typed = sc.INTAKE_EN[:upto]
    waiting_on = _feed_until_killed(tmp_path, typed, marker)
    assert waiting_on.startswith(expected)

    dbfile = tmp_path / "salescoach.db"
    [(name, industry, nature, size, status)] = sql(
        dbfile, "SELECT a.name, a.industry, a.nature, a.size_employees, d.status "
                "FROM accounts a, dialog_sessions d")
    assert (name, industry, nature, size, status) == (
        "Daqing Oilfield Company", "oil_gas", "state_owned", 12000, "active")
    contacts = sql(dbfile, "SELECT name, title, comm_style FROM contacts ORDER BY created_at")
    if marker == "[28/":
        assert contacts == [("Liu Qiang", "Head of procurement", "owl"),
                            ("Zhao Min", None, None)]
    else:
        assert contacts == []

    chat = Chat(tmp_path)
    try:
        greeting = chat.wait_for("Type resume to continue.")
        progress = expected[1:expected.index("]")]
        assert f"You have an unfinished customer intake ({progress})." in greeting
        since = len(chat.out)
        chat.say("resume", marker)
        chat.wait_for("\n\n", since=chat.out.rindex(marker))
        assert _question_at(chat.out, marker) == waiting_on
        # exactly that one question, nothing else asked
        assert re.findall(r"\[\d+/\d+\]", chat.out[since:]) == [f"[{progress}]"]
        if marker == "[28/":
            # carry on to the end: no duplicate contact, the verdict comes out
            rest, _ = for_today(sc.INTAKE_EN[upto + 2:])  # after "back" and the name again
            assert chat.proc.stdin is not None
            chat.proc.stdin.write("".join(f"{line}\n" for line in rest))
            assert chat.finish() == 0
            assert sc.INTAKE_EN_VERDICT in chat.out
            got = sql(dbfile, "SELECT name, level, comm_style FROM contacts "
                              "ORDER BY created_at")
            assert got == [("Liu Qiang", "senior", "owl"), ("Zhao Min", "executive", "tiger")]
            assert sql(dbfile, "SELECT verdict FROM opportunities") == [("opportunity",)]
    finally:
        chat.close()


def test_next_friday_helper_matches_the_parser() -> None:
    for offset in range(14):
        today = TODAY + timedelta(days=offset)
        assert parsing.parse_date("下周五", today=today, lang="zh") == next_friday(today)


@pytest.mark.parametrize("color", [False, True], ids=["plain", "ansi"])
def test_terminal_rendering_shows_escaped_user_text_verbatim(color: bool) -> None:
    from markupsafe import Markup, escape

    from dialogs.messages import Option, Outbound
    from handlers.console import render

    markup = Markup("<b>Customer:</b> {}").format(escape("<b>x</b> & {{ 7*7 }}"))
    shown = render(Outbound(str(markup), options=(Option("a", "A &amp; B"),)), color=color)
    bold = "\033[1m" if color else ""
    reset = "\033[0m" if color else ""
    assert shown == f"{bold}Customer:{reset} <b>x</b> & {{{{ 7*7 }}}}\n  1. A & B"
