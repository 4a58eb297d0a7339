"""Forgetting and exporting a contact, and the audit log of personal data."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from store.db import Database
from store.models import Activity, AuditLog, Contact, SpinEntry
from store.privacy import ContactNotFound, export_contact, forget_contact, is_erased
from tests.store.lookups_data import NOW, ORG, build, uid

WANGHAI = uid("contact", "wanghai")
LATER = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _history(session: Session) -> None:
    """Free text that mentions Wang Hai, linked to him."""
    opp = uid("opp", "sinopec-winter")
    session.add(Activity(id=uuid.uuid4(), org_id=ORG, user_id=uid("user", "rep1"),
                         account_id=uid("account", "sinopec"), opportunity_id=opp,
                         contact_id=WANGHAI, kind="visit", occurred_at=NOW, created_at=NOW,
                         note="Lunch with 王海 (Wang Hai); wang hai wants samples."))
    session.add(SpinEntry(id=uuid.uuid4(), org_id=ORG, opportunity_id=opp, contact_id=WANGHAI,
                          user_id=uid("user", "rep1"), kind="I", asked_at=NOW, created_at=NOW,
                          question="What does a cold shift cost you, Mr Wang Hai?",
                          answer="王海: a lost shift costs 200k."))
    session.flush()


async def test_export_contact_gives_everything_stored_and_is_audited(db: Database) -> None:
    await db.run(build)
    await db.run(_history)
    data = await db.run(lambda s: export_contact(s, org_id=ORG, contact_id=WANGHAI, now=LATER,
                                                 user_id=uid("user", "rep1")))
    json.dumps(data, ensure_ascii=False)  # JSON-ready
    contact = data["contact"]
    assert contact["name"] == "王海 (Wang Hai)"
    assert contact["personal_notes"] == "Collects tea; his son studies in Leeds."
    assert contact["phone"] == "+86 10 5555 0000"
    assert contact["buying_roles"] == ["decision_maker"]
    assert data["account"] == "中石化北京石油分公司 (Sinopec Beijing)"
    assert data["owner"] == "Rep1"
    assert [a["note"] for a in data["activities"]] == [
        "Lunch with 王海 (Wang Hai); wang hai wants samples."]
    assert data["spin_entries"][0]["answer"] == "王海: a lost shift costs 200k."

    def audit(session: Session) -> list[tuple[str, str, uuid.UUID | None]]:
        return [(a.action, a.subject_type, a.user_id) for a in session.execute(
            select(AuditLog).where(AuditLog.subject_id == WANGHAI)).scalars()]

    assert await db.run(audit) == [("export", "contact", uid("user", "rep1"))]


async def test_forget_erases_personal_data_and_keeps_the_contact(db: Database) -> None:
    await db.run(build)
    await db.run(_history)
    changed = await db.run(lambda s: forget_contact(s, org_id=ORG, contact_id=WANGHAI, now=LATER,
                                                    actor="dpo"))
    assert changed == {"contacts": 1, "activities": 1, "spin_entries": 1, "buying_signals": 0,
                       "needs": 0, "dialog_sessions": 0}

    def state(session: Session) -> tuple[Contact, list[str], list[str]]:
        contact = session.get(Contact, WANGHAI)
        assert contact is not None
        notes = list(session.execute(select(Activity.note)
                                     .where(Activity.contact_id == WANGHAI)).scalars())
        spin = session.execute(select(SpinEntry.question, SpinEntry.answer)
                               .where(SpinEntry.contact_id == WANGHAI)).one()
        return contact, [n or "" for n in notes], [spin[0], spin[1] or ""]

    contact, notes, spin = await db.run(state)
    # the fact that a contact existed, and their place in the buying process, stay
    assert is_erased(contact.name) and contact.name == f"(erased #{WANGHAI.hex[:8]})"
    assert contact.buying_roles == ["decision_maker"]
    assert contact.relationship_stage == "trust"
    assert contact.account_id == uid("account", "sinopec")
    for column in ("personal_notes", "phone", "email", "title", "work_notes", "comm_style"):
        assert getattr(contact, column) is None, column
    everything = " ".join(notes + spin)
    for name in ("王海", "Wang Hai", "wang hai"):
        assert name not in everything
    assert "samples" in notes[0] and "200k" in spin[1]  # the rest of the history stays

    def audit(session: Session) -> list[AuditLog]:
        return list(session.execute(select(AuditLog).where(AuditLog.subject_id == WANGHAI))
                    .scalars())

    entries = await db.run(audit)
    assert [(e.action, e.actor) for e in entries] == [("forget", "dpo")]
    # the audit log holds no personal data itself
    assert "Wang" not in json.dumps(entries[0].detail) and "王海" not in json.dumps(
        entries[0].detail)

    # the search no longer finds them by name; forgetting twice is harmless
    again = await db.run(lambda s: forget_contact(s, org_id=ORG, contact_id=WANGHAI, now=LATER))
    assert again["activities"] == 0


async def test_forget_or_export_of_an_unknown_contact(db: Database) -> None:
    await db.run(build)
    with pytest.raises(ContactNotFound):
        await db.run(lambda s: forget_contact(s, org_id=ORG, contact_id=uuid.uuid4(), now=LATER))
    with pytest.raises(ContactNotFound):  # another org's id is unknown here too
        await db.run(lambda s: export_contact(s, org_id=uuid.uuid4(), contact_id=WANGHAI,
                                              now=LATER))


def test_cli_export_and_forget_a_contact(db: Database, database_url: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from bot.cli import cli
    from bot.demo import demo_id

    monkeypatch.setenv("DATABASE_URL", database_url)
    runner = CliRunner()
    assert runner.invoke(cli, ["demo", "--at", "2026-11-27T09:00:00"]).exit_code == 0
    sunli = demo_id("contact", "sunli")
    out = tmp_path / "sunli.json"
    result = runner.invoke(cli, ["export", "contact", sunli.hex[:8], str(out), "--org", "demo",
                                 "--user", "wangfang"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["contact"]["name"] == "孙丽 (Sun Li)"
    assert "badminton" in data["contact"]["personal_notes"]
    assert len(data["spin_entries"]) == 2 and data["account"].startswith("大庆油田")

    result = runner.invoke(cli, ["export", "contact", "--org", "demo"])
    assert result.exit_code == 1 and "did you mean “contacts”" in result.output
    result = runner.invoke(cli, ["forget", "contact", "ffffffff", "--org", "demo", "--yes"])
    assert result.exit_code == 1 and "no contact “ffffffff”" in result.output
    result = runner.invoke(cli, ["forget", "contact", str(sunli), "--org", "demo"], input="n\n")
    assert result.exit_code == 1

    result = runner.invoke(cli, ["forget", "contact", str(sunli), "--org", "demo", "--yes",
                                 "--user", "wangfang"])
    assert result.exit_code == 0, result.output
    assert f"Contact {sunli} forgotten" in result.output
    result = runner.invoke(cli, ["export", "contact", str(sunli), "--org", "demo"])
    data = json.loads(result.output)
    assert data["contact"]["personal_notes"] is None
    assert data["contact"]["name"] == f"(erased #{sunli.hex[:8]})"
    assert [e["action"] for e in data["audit_log"]] == ["export", "forget"]
