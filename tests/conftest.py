"""Shared fixtures: a migrated database on SQLite and, when configured, on PostgreSQL.

`SALESCOACH_TEST_DATABASE_URL` points at a PostgreSQL server (CI sets it and requires it). Each
test run creates its own PostgreSQL database there, migrates it once, and empties the tables
before every test; SQLite tests get a fresh copy of a migrated file.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from store.db import Database, create_database, drop_database

# the shared conversation checks get pytest's detailed assertion messages too
pytest.register_assert_rewrite("tests.conversation_checks")

PG_ENV = "SALESCOACH_TEST_DATABASE_URL"


def _backends() -> list[str]:
    return ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for every test that needs a database."""
    path = tmp_path_factory.mktemp("template") / "template.db"

    async def _make() -> None:
        db = Database(f"sqlite:///{path}")
        await db.upgrade()
        await db.dispose()

    asyncio.run(_make())
    return path


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test run; dropped afterwards."""
    raw = os.environ.get(PG_ENV)
    if not raw:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} must point at PostgreSQL in CI")
        pytest.skip(f"{PG_ENV} is not set")
    name = f"salescoach_test_{uuid.uuid4().hex[:10]}"

    async def _migrate() -> None:
        db = Database(url)
        await db.upgrade()
        await db.dispose()

    url = asyncio.run(create_database(raw, name))
    try:
        asyncio.run(_migrate())
        yield url
    finally:
        asyncio.run(drop_database(raw, name))


@pytest.fixture(params=_backends())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty, migrated database: SQLite, then PostgreSQL when configured."""
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        target = tmp_path / "test.db"
        shutil.copy(template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("pg_url")
    return url


def _truncate_all(session: object) -> None:
    from store.models import Base

    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))  # type: ignore[attr-defined]


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A `Database` on an empty, migrated schema."""
    database = Database(database_url)
    if not database.is_sqlite:
        await database.run(_truncate_all)
    yield database
    await database.dispose()
