"""CSV import and export: bad rows, BOM, Chinese headers, idempotence, round trip."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.demo import load_demo
from store import csvio
from store.csvio import ImportResult, Problem, export_csv, import_file
from store.db import Database
from store.models import Account, AuditLog, Contact, Invoice, Opportunity, Org, User
from tests.store.lookups_data import ORG, build, uid

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

ACCOUNTS_EN = """external_id,name,owner,industry,nature,size_employees,last_purchase_amount
CRM-1,Sinopec Beijing,rep1,oil_gas,state_owned,"12,000",1500000.50
CRM-2,Daqing Oilfield,Rep2,oil_gas,state_owned,200000,
CRM-3,Harbin Bus,,bus_transport,,,
"""


def write(tmp_path: Path, name: str, text: str, *, bom: bool = False) -> Path:
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


async def run_import(db: Database, path: Path, kind: str, **kw: object) -> ImportResult:
    return await import_file(db, path, org_id=ORG, kind=kind, now=NOW,
                             default_owner=uid("user", "manager"), **kw)  # type: ignore[arg-type]


def count(session: Session, model: type) -> int:
    return int(session.execute(select(func.count()).select_from(model)
                               .where(model.org_id == ORG)).scalar() or 0)  # type: ignore[attr-defined]


def accounts_by_key(session: Session) -> dict[str, tuple[str, str, int | None, Decimal | None]]:
    rows = session.execute(select(Account.external_id, Account.name, User.display_name,
                                  Account.size_employees, Account.last_purchase_amount)
                           .join(User, User.id == Account.owner_id)
                           .where(Account.org_id == ORG, Account.external_id.is_not(None)))
    return {str(r[0]): (r[1], r[2], r[3], r[4]) for r in rows}


async def test_import_creates_then_reimport_changes_nothing(db: Database, tmp_path: Path) -> None:
    await db.run(build)
    path = write(tmp_path, "accounts.csv", ACCOUNTS_EN)
    first = await run_import(db, path, "accounts")
    assert (first.created, first.updated, first.unchanged, first.rejected) == (3, 0, 0, 0)
    assert first.committed and first.problems == []
    stored = await db.run(accounts_by_key)
    assert stored["CRM-1"] == ("Sinopec Beijing", "Rep1", 12000, Decimal("1500000.50"))
    assert stored["CRM-2"][1] == "Rep2"
    assert stored["CRM-3"][1] == "Manager"  # no owner: the importing user

    again = await run_import(db, path, "accounts")
    assert (again.created, again.updated, again.unchanged, again.rejected) == (0, 0, 3, 0)

    changed = write(tmp_path, "changed.csv", ACCOUNTS_EN.replace("200000", "210000"))
    third = await run_import(db, changed, "accounts")
    assert (third.created, third.updated, third.unchanged) == (0, 1, 2)
    assert (await db.run(accounts_by_key))["CRM-2"][2] == 210000


async def test_bom_and_chinese_headers(db: Database, tmp_path: Path) -> None:
    await db.run(build)
    text = ("外部编号,名称,负责人,行业,员工人数\n"
            "ZH-1,中石化上海分公司,rep1,oil_gas,800\n"
            "ZH-2,上海公交,rep1,bus_transport,\n")
    result = await run_import(db, write(tmp_path, "zh.csv", text, bom=True), "accounts")
    assert (result.created, result.rejected) == (2, 0)
    stored = await db.run(accounts_by_key)
    assert stored["ZH-1"] == ("中石化上海分公司", "Rep1", 800, None)
    # mixed: English header names with spaces, any case, and Chinese, in any order
    mixed = "Name,EXTERNAL ID,员工人数\n上海公交集团,ZH-2,1200\n"
    result = await run_import(db, write(tmp_path, "mixed.csv", mixed), "accounts")
    assert (result.updated, result.rejected) == (1, 0)
    assert (await db.run(accounts_by_key))["ZH-2"][0] == "上海公交集团"


async def test_a_bad_row_rejects_the_file_and_reports_every_problem(
        db: Database, tmp_path: Path) -> None:
    await db.run(build)
    text = ACCOUNTS_EN + ("CRM-4,Bad One,nobody,oil and steel,,-5,abc\n"
                          "CRM-1,Duplicate,rep1,,,,\n"
                          ",No Id,rep1,,,,\n")
    seen: list[Problem] = []
    result = await run_import(db, write(tmp_path, "bad.csv", text), "accounts",
                              on_problem=seen.append)
    assert not result.committed
    assert (result.created, result.rejected) == (3, 3)  # counted, then rolled back
    where = {(p.row, p.column, p.code) for p in result.problems}
    assert where == {
        (5, "owner", "unknown_owner"),
        (5, "industry", "bad_code"),
        (5, "size_employees", "out_of_range"),
        (5, "last_purchase_amount", "not_number"),
        (6, "external_id", "duplicate_key"),
        (7, "external_id", "required"),
    }
    assert seen == result.problems
    assert await db.run(count, Account) == 7  # only the fixture's: nothing was saved

    partial = await run_import(db, write(tmp_path, "bad.csv", text), "accounts", partial=True)
    assert partial.committed and (partial.created, partial.rejected) == (3, 3)
    assert await db.run(count, Account) == 10


async def test_dry_run_saves_nothing(db: Database, tmp_path: Path) -> None:
    await db.run(build)
    result = await run_import(db, write(tmp_path, "a.csv", ACCOUNTS_EN), "accounts",
                              dry_run=True)
    assert result.created == 3 and not result.committed
    assert await db.run(count, Account) == 7

    def audited(session: Session) -> int:
        return int(session.execute(select(func.count()).select_from(AuditLog)).scalar() or 0)

    assert await db.run(audited) == 0


async def test_header_problems_stop_the_import(db: Database, tmp_path: Path) -> None:
    await db.run(build)
    result = await run_import(db, write(tmp_path, "h.csv", "external_id,nmae\nX,Y\n"),
                              "accounts")
    assert result.fatal and not result.committed
    assert {(p.row, p.column, p.code) for p in result.problems} == {
        (1, "nmae", "unknown_column"), (1, "name", "missing_column")}
    empty = await run_import(db, write(tmp_path, "e.csv", ""), "accounts")
    assert empty.fatal and empty.problems[0].code == "empty"
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("external_id,name\nX,Caf\xe9 M\xfcller\n".encode("latin-1"))
    broken = await run_import(db, latin1, "accounts")
    assert broken.fatal and broken.problems[-1].code == "not_utf8"


async def test_references_between_files_and_invoice_checks(
        db: Database, tmp_path: Path) -> None:
    await db.run(build)
    await run_import(db, write(tmp_path, "a.csv", ACCOUNTS_EN), "accounts")
    contacts = ("external_id,account_external_id,name,buying_roles,relationship_stage\n"
                "P-1,CRM-1,王海,decision_maker;evaluator,trust\n"
                "P-2,CRM-9,Nobody,,\n")
    result = await run_import(db, write(tmp_path, "c.csv", contacts), "contacts", partial=True)
    assert (result.created, result.rejected) == (1, 1)
    assert [(p.row, p.column, p.code) for p in result.problems] == [
        (3, "account_external_id", "unknown_ref")]

    def roles(session: Session) -> list[str]:
        found = session.execute(select(Contact.buying_roles)
                                .where(Contact.external_id == "P-1")).scalar()
        return list(found or [])

    assert await db.run(roles) == ["decision_maker", "evaluator"]

    invoices = ("external_id,account_external_id,number,amount,currency,issued_on,due_on\n"
                "I-1,CRM-1,INV-1,1000,cny,2026-10-01,2026-10-31\n"
                "I-2,CRM-1,INV-2,-5,CNY,2026-10-01,2026-09-30\n"
                "I-3,CRM-1,AC-001,10,CNY,2026-10-01,2026-10-31\n"
                "I-4,CRM-1,INV-1,10,CNY,2026/10/01,2026-10-31\n")
    result = await run_import(db, write(tmp_path, "i.csv", invoices), "invoices")
    assert {(p.row, p.column, p.code) for p in result.problems} == {
        (3, "amount", "negative"), (3, "due_on", "due_before_issue"),
        (4, "number", "number_taken"),  # the fixture's invoice AC-001
        (5, "number", "number_taken"),  # INV-1 already on row 2
    }
    assert not result.committed


def _demo_export(session: Session, org_id: uuid.UUID) -> dict[str, str]:
    out = {}
    for kind in csvio.KINDS:
        buffer = io.StringIO()
        export_csv(session, org_id=org_id, kind=kind, out=buffer)
        out[kind] = buffer.getvalue()
    return out


def _copy_org(session: Session) -> uuid.UUID:
    """An empty org with the demo's people (same names), to import the export into."""
    demo = session.execute(select(Org).where(Org.external_id == "demo")).scalar_one()
    copy = Org(id=uuid.uuid4(), name="Copy", platform="console", external_id="copy",
               settings={}, created_at=NOW, updated_at=NOW)
    session.add(copy)
    session.flush()
    for name, role in session.execute(select(User.display_name, User.role)
                                      .where(User.org_id == demo.id)):
        session.add(User(id=uuid.uuid4(), org_id=copy.id, display_name=name, role=role,
                         created_at=NOW, updated_at=NOW))
    session.flush()
    return copy.id


async def test_export_import_round_trip(db: Database, tmp_path: Path) -> None:
    summary = await db.run(load_demo, now=NOW)
    exported = await db.run(_demo_export, summary.org_id)
    assert exported["accounts"].splitlines()[0].startswith("external_id,name,owner,status")
    assert "大庆油田 (Daqing Oilfield)" in exported["accounts"]
    assert "decision_maker" in exported["contacts"]
    assert "YY-2026-0101" in exported["invoices"]

    # into the same org: nothing changes
    for kind in csvio.KINDS:
        path = write(tmp_path, f"{kind}.csv", exported[kind])
        result = await import_file(db, path, org_id=summary.org_id, kind=kind, now=NOW)
        assert result.problems == [], kind
        assert (result.created, result.updated) == (0, 0), kind
        assert result.unchanged == len(exported[kind].splitlines()) - 1, kind

    # into another org: everything is created, and exporting it again gives the same files
    copy = await db.run(_copy_org)
    for kind in csvio.KINDS:
        path = write(tmp_path, f"{kind}.csv", exported[kind])
        result = await import_file(db, path, org_id=copy, kind=kind, now=NOW)
        assert result.problems == [] and result.committed, kind
        assert result.created == len(exported[kind].splitlines()) - 1, kind
    again = await db.run(_demo_export, copy)
    for kind in csvio.KINDS:  # the same rows (in another order: export goes by internal id)
        assert sorted(again[kind].splitlines()) == sorted(exported[kind].splitlines()), kind

    def copied(session: Session) -> tuple[int, int]:
        opps = session.execute(select(func.count()).select_from(Opportunity)
                               .where(Opportunity.org_id == copy)).scalar()
        invoices = session.execute(select(func.count()).select_from(Invoice)
                                   .where(Invoice.org_id == copy)).scalar()
        return int(opps or 0), int(invoices or 0)

    assert await db.run(copied) == (9, 7)


async def test_zh_export_headers_import_back(db: Database, tmp_path: Path) -> None:
    summary = await db.run(load_demo, now=NOW)

    def export_zh(session: Session) -> str:
        buffer = io.StringIO()
        export_csv(session, org_id=summary.org_id, kind="opportunities", out=buffer,
                   headers="zh")
        return buffer.getvalue()

    text = await db.run(export_zh)
    assert text.startswith("外部编号,客户外部编号,商机名称,负责人")
    result = await import_file(db, write(tmp_path, "o.csv", text, bom=True),
                               org_id=summary.org_id, kind="opportunities", now=NOW)
    assert (result.unchanged, result.problems) == (9, [])


@pytest.mark.parametrize("rows", [2500])
async def test_import_in_batches(db: Database, tmp_path: Path, rows: int,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    await db.run(build)
    monkeypatch.setattr(csvio, "BATCH", 700)
    lines = ["external_id,name,owner"] + [f"B-{i},Account {i},rep1" for i in range(rows)]
    lines.insert(1000, "B-5,Duplicate of row 7,rep1")
    result = await run_import(db, write(tmp_path, "big.csv", "\n".join(lines) + "\n"),
                              "accounts", partial=True)
    assert (result.rows, result.created, result.rejected) == (rows + 1, rows, 1)
    assert result.problems == [Problem(1001, "external_id", "duplicate_key", {"first": 7})]
    assert await db.run(count, Account) == rows + 7


def test_cli_export_then_import_and_report_problems(db: Database, database_url: str,
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from bot.cli import cli

    monkeypatch.setenv("DATABASE_URL", database_url)
    runner = CliRunner()
    assert runner.invoke(cli, ["demo", "--at", "2026-11-27T09:00:00"]).exit_code == 0
    out = tmp_path / "accounts.csv"
    result = runner.invoke(cli, ["export", "accounts", str(out), "--org", "demo",
                                 "--headers", "zh", "--bom"])
    assert result.exit_code == 0, result.output
    assert "5 accounts written to" in result.output
    assert out.read_bytes().startswith("\ufeff外部编号,名称".encode())
    result = runner.invoke(cli, ["import", "accounts", str(out), "--org", "demo"])
    assert result.exit_code == 0, result.output
    assert "accounts: 5 rows — 0 created, 0 updated, 5 unchanged, 0 rejected" in result.output

    bad = write(tmp_path, "bad.csv", "external_id,name,industry\nN-1,New,oil\nN-2,Newer,\n")
    result = runner.invoke(cli, ["import", "accounts", str(bad), "--org", "demo",
                                 "--user", "lilei", "--dry-run"])
    assert result.exit_code == 1
    assert "row 2, column “industry”: “oil” is not one of: oil_gas" in result.output
    assert "1 created, 0 updated, 0 unchanged, 1 rejected" in result.output
    assert "Dry run: nothing was saved." in result.output
    result = runner.invoke(cli, ["import", "accounts", str(bad), "--org", "demo",
                                 "--user", "lilei", "--lang", "zh"])
    assert result.exit_code == 1
    assert "第 2 行，“industry”列" in result.output and "没有保存任何内容" in result.output
    result = runner.invoke(cli, ["import", "accounts", str(bad), "--org", "demo",
                                 "--user", "lilei", "--partial"])
    assert result.exit_code == 1 and "Saved the good rows" in result.output

    result = runner.invoke(cli, ["export", "deals", "--org", "demo"])
    assert result.exit_code == 1 and "KIND is one of" in result.output
    result = runner.invoke(cli, ["import", "accounts", str(out), "--org", "nowhere"])
    assert result.exit_code == 1 and "There is no company “nowhere”" in result.output


def test_cli_says_why_a_file_cannot_be_imported(db: Database, database_url: str,
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty file, one that is not UTF-8, or one without the required columns: the
    reason is printed (it was only "nothing was imported" for the first two)."""
    from typer.testing import CliRunner

    from bot.cli import cli

    monkeypatch.setenv("DATABASE_URL", database_url)
    runner = CliRunner()
    assert runner.invoke(cli, ["demo", "--at", "2026-11-27T09:00:00"]).exit_code == 0
    empty = write(tmp_path, "empty.csv", "")
    gbk = tmp_path / "gbk.csv"  # what Excel saves as plain "CSV" on a Chinese Windows
    gbk.write_bytes("名称\n大庆油田\n".encode("gbk"))
    headless = write(tmp_path, "headless.csv", "external_id,title\nX-1,Boss\n")
    cases = [(empty, "en", "the file is empty"), (empty, "zh", "文件是空的"),
             (gbk, "en", "the file is not UTF-8 text"), (gbk, "zh", "文件不是 UTF-8 文本"),
             (headless, "en", "column “name”: this column is required but missing")]
    for path, lang, reason in cases:
        result = runner.invoke(cli, ["import", "accounts", str(path), "--org", "demo",
                                     "--lang", lang])
        assert result.exit_code == 1, result.output
        assert reason in result.output, (path.name, lang, result.output)
