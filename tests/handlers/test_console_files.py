"""The terminal saves the files it receives (a generated proposal) and prints where."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from docx import Document

from bot.app import build_engine
from bot.coach import Coach
from bot.commands import load_commands
from dialogs.messages import Attachment
from handlers.console import Console, save_attachment
from store.db import Database
from tests.bot.test_proposal import NOW, add_opportunity, speaker

REPO = Path(__file__).resolve().parents[2]


def test_files_are_never_overwritten_and_stay_in_their_folder(tmp_path: Path) -> None:
    folder = tmp_path / "out" / "files"
    first = save_attachment(folder, Attachment("p-v1.docx", b"one", "application/x"))
    second = save_attachment(folder, Attachment("p-v1.docx", b"two", "application/x"))
    third = save_attachment(folder, Attachment("p-v1.docx", b"three", "application/x"))
    assert [p.name for p in (first, second, third)] == ["p-v1.docx", "p-v1-1.docx",
                                                        "p-v1-2.docx"]
    assert [p.read_bytes() for p in (first, second, third)] == [b"one", b"two", b"three"]
    sneaky = save_attachment(folder, Attachment("../../etc/passwd", b"x", "text/plain"))
    assert sneaky.parent == folder.resolve() and sneaky.name == "_.._etc_passwd"
    hidden = save_attachment(folder, Attachment("..", b"y", "text/plain"))
    assert hidden.parent == folder.resolve() and hidden.name == "attachment"
    chinese = save_attachment(folder, Attachment("建议书-v1.md", "你好".encode(), "text/markdown"))
    assert chinese.read_text(encoding="utf-8") == "你好"


async def test_the_console_saves_a_proposal_and_prints_its_paths(
        db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    renderer, engine = build_engine()
    coach = Coach(db, engine, renderer, clock=lambda: NOW, registry=load_commands())
    ids = await speaker(db, coach)
    await db.run(add_opportunity, ids)
    (tmp_path / "salescoach-files").mkdir()
    (tmp_path / "salescoach-files" / "2027-winter-down-jackets-v1.md").write_text("mine")
    out = io.StringIO()
    console = Console(coach, user="lilei", org="acme", stdin=io.StringIO("proposal\n"),
                      stdout=out, interactive=False)
    await console.run()
    folder = (tmp_path / "salescoach-files").resolve()
    md = folder / "2027-winter-down-jackets-v1-1.md"
    docx = folder / "2027-winter-down-jackets-v1.docx"
    assert f"📎 {md}\n📎 {docx}\n" in out.getvalue()
    assert (folder / "2027-winter-down-jackets-v1.md").read_text() == "mine"  # untouched
    assert md.read_text(encoding="utf-8").startswith("# Proposal: 2027 winter down jackets")
    headings = [p.text for p in Document(str(docx)).paragraphs
                if p.style is not None and p.style.name == "Heading 1"]
    assert len(headings) == 7


def test_salescoach_chat_saves_the_files_in_the_working_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k != "DATABASE_URL" and not k.startswith("SALESCOACH_")}
    env.update(PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8")

    def cli(*args: str, stdin: str = "") -> str:
        done = subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=tmp_path, env=env,
                              text=True, encoding="utf-8", input=stdin, capture_output=True,
                              timeout=120, check=True)
        return done.stdout

    cli("demo")
    output = cli("chat", "--org", "demo", "--user", "lilei", stdin="proposal 大庆\nproposal 大庆\n")
    saved = sorted(p.name for p in (tmp_path / "salescoach-files").iterdir())
    stem = "2027-winter-down-jackets-for-drilling-crews"
    # the demo already has version 1 of this proposal
    assert saved == [f"{stem}-v2.docx", f"{stem}-v2.md", f"{stem}-v3.docx", f"{stem}-v3.md"]
    for name in saved:
        assert f"📎 {(tmp_path / 'salescoach-files' / name).resolve()}" in output
