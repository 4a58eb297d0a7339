"""CSV files a manager can trust (issues 13.11 and 14.12): a bad reference is a row error, not
a traceback; cells read like chat answers (the dialogs' parsers); a malformed row is named with
its line; an export is safe to open in Excel and imports back to the exact text."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from bot.cli import cli
from store.csvio import Problem
from store.db import Database
from tests.store.lookups_data import build
from tests.store.test_csvio import ACCOUNTS_EN, run_import, write


def _cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DATABASE_URL", database_url)
    runner = CliRunner()
    assert runner.invoke(cli, ["demo", "--at", "2026-11-27T09:00:00"]).exit_code == 0
    return runner


def _refused(result: Result) -> str:
    """The import was refused the way a user can act on: exit 1, no Python traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result.output


def test_cli_bad_references_are_row_errors(database_url: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    runner = _cli(database_url, monkeypatch)
    contacts = write(tmp_path, "c.csv", "external_id,account_external_id,name,owner\n"
                                        "P-1,NO-SUCH-CUSTOMER,Wang Hai,nobody\n")
    out = _refused(runner.invoke(cli, ["import", "contacts", str(contacts), "--org", "demo"]))
    assert ("row 2, column “account_external_id”: no record with external id "
            "“NO-SUCH-CUSTOMER” — import that file first") in out
    assert "row 2, column “owner”: no user called “nobody”" in out
    assert "Nothing was saved" in out
    out = _refused(runner.invoke(cli, ["import", "contacts", str(contacts), "--org", "demo",
                                       "--lang", "zh"]))
    assert "第 2 行，“account_external_id”列：没有外部编号为“NO-SUCH-CUSTOMER”的记录" in out
    assert "没有名为“nobody”的用户" in out

    opportunities = write(tmp_path, "o.csv", "外部编号,客户外部编号,商机名称,负责人\n"
                                             "O-1,GONE,Bus fleet,lilei\n")
    out = _refused(runner.invoke(cli, ["import", "opportunities", str(opportunities),
                                       "--org", "demo"]))
    assert "row 2, column “客户外部编号”: no record with external id “GONE”" in out


async def test_an_invoice_of_another_customers_opportunity_is_refused(
        db: Database, tmp_path: Path) -> None:
    await db.run(build)
    assert (await run_import(db, write(tmp_path, "a.csv", ACCOUNTS_EN), "accounts")).committed
    deals = ("external_id,account_external_id,name\nD-1,CRM-1,Pipeline inspection\n")
    assert (await run_import(db, write(tmp_path, "o.csv", deals), "opportunities")).committed
    invoices = ("external_id,account_external_id,opportunity_external_id,number,amount,"
                "issued_on,due_on\n"
                "I-1,CRM-2,D-1,INV-9,100,2026-10-01,2026-10-31\n"
                "I-2,CRM-1,D-404,INV-10,100,2026-10-01,2026-10-31\n")
    result = await run_import(db, write(tmp_path, "i.csv", invoices), "invoices")
    assert not result.committed
    assert result.problems == [
        Problem(2, "opportunity_external_id", "other_customer", {"ref": "D-1"}),
        Problem(3, "opportunity_external_id", "unknown_ref", {"key": "D-404"})]
