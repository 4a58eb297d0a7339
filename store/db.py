"""How the store reaches the database: one unit of work per call, one commit.

Measured, not assumed (see DESIGN.md): the async ORM on aiosqlite hops threads once per statement,
so on SQLite a turn runs as one call of plain synchronous SQLAlchemy in a single worker thread
(SQLite has one writer anyway). On PostgreSQL the same synchronous store functions run through
`AsyncSession.run_sync` on asyncpg, so the event loop is never blocked. Store functions take a
`Session` and never commit; `Database.run` opens the unit of work, commits, or rolls back.
"""

from __future__ import annotations

import asyncio
import functools
import json
import queue
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

P = ParamSpec("P")
T = TypeVar("T")

MIGRATIONS = Path(__file__).with_name("migrations")


class ConfigError(Exception):
    """A setting that cannot work; the message says what to fix."""


def normalize_url(raw: str) -> URL:
    """Accept a database URL as a user writes it and pick the driver salescoach uses."""
    try:
        url = make_url(raw.strip())
    except Exception as exc:  # sqlalchemy raises ArgumentError with a terse text
        raise ConfigError(
            f"DATABASE_URL {raw!r} is not a database URL; "
            "use e.g. sqlite:///salescoach.db or postgresql://user@host/db"
        ) from exc
    backend = url.get_backend_name()
    if backend == "sqlite":
        return url.set(drivername="sqlite+pysqlite")
    if backend in ("postgresql", "postgres"):
        query = dict(url.query)
        # libpq's sslmode is spelled `ssl` for asyncpg
        if "sslmode" in query:
            query["ssl"] = query.pop("sslmode")
        return url.set(drivername="postgresql+asyncpg", query=query)
    raise ConfigError(f"DATABASE_URL uses {backend!r}; salescoach supports sqlite and postgresql")


class _Worker:
    """One thread that runs SQLite units of work in order, handing results back to the loop.

    Like a one-thread `ThreadPoolExecutor` with `run_in_executor`, but under load it does not
    wake the event loop once per unit of work: results finished while the loop has not yet
    collected the previous ones are delivered together by one callback.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[[], Any]] | None
        ] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._done: dict[
            asyncio.AbstractEventLoop,
            list[tuple[asyncio.Future[Any], bool, Any]],
        ] = {}
        self._stopped = False
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def submit(self, call: Callable[[], T]) -> asyncio.Future[T]:
        if self._stopped:
            raise RuntimeError("the database is disposed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, call))
        return future

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._jobs.put(None)
            self._thread.join()

    def _main(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, future, call = job
            if future.cancelled():  # the caller gave up before it started: do not run it
                continue
            try:
                outcome: tuple[asyncio.Future[Any], bool, Any] = (future, True, call())
            except BaseException as exc:  # handed to the awaiting coroutine
                outcome = (future, False, exc)
            with self._lock:
                batch = self._done.get(loop)
                if batch is not None:
                    batch.append(outcome)
                    continue
                self._done[loop] = [outcome]
            try:
                loop.call_soon_threadsafe(self._deliver, loop)
            except RuntimeError:  # the loop is closed; nobody is waiting any more
                with self._lock:
                    self._done.pop(loop, None)

    def _deliver(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            batch = self._done.pop(loop, [])
        for future, ok, value in batch:
            if future.cancelled():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


def dumps(value: Any) -> str:
    """JSON columns (a dialog's state is written every turn): orjson, several times faster
    than the standard library; what it refuses (an integer beyond 64 bits) goes to `json`."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


def loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


class Database:
    """The one way the application talks to SQL. Built by the composition root, never at import."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalize_url(url)
        self.dialect = self.url.get_backend_name()
        self._sync: Engine | None = None
        self._async: AsyncEngine | None = None
        self._worker: _Worker | None = None
        if self.dialect == "sqlite":
            db = self.url.database
            if db and db != ":memory:":
                Path(db).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
            self._sync = create_engine(self.url, echo=echo, json_serializer=dumps,
                                       json_deserializer=loads)
            event.listen(self._sync, "connect", _sqlite_pragmas)
            # SQLite has a single writer: one worker thread serialises units of work and keeps
            # one connection hot.
            self._worker = _Worker("sqlite")
        else:
            self._async = create_async_engine(self.url, echo=echo, pool_size=20, max_overflow=10,
                                              json_serializer=dumps, json_deserializer=loads)

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    async def run(
        self, fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(session, ...)` as one unit of work and commit it; roll back on any error."""
        if self._sync is not None:
            assert self._worker is not None
            return await self._worker.submit(
                functools.partial(self._run_sync, fn, *args, **kwargs))
        assert self._async is not None
        async with AsyncSession(self._async, expire_on_commit=False) as session:
            result = await session.run_sync(lambda s: fn(s, *args, **kwargs))
            await session.commit()
            return result

    def _run_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        assert self._sync is not None
        with Session(self._sync, expire_on_commit=False) as session:
            result = fn(session, *args, **kwargs)
            session.commit()
            return result

    async def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to `revision` with Alembic."""
        from alembic import command

        def _upgrade(connection: Any) -> None:
            cfg = alembic_config()
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)

        if self._sync is not None:
            def _work() -> None:
                assert self._sync is not None
                with self._sync.begin() as conn:
                    _upgrade(conn)

            assert self._worker is not None
            await self._worker.submit(_work)
        else:
            assert self._async is not None
            async with self._async.begin() as conn:
                await conn.run_sync(_upgrade)

    async def dispose(self) -> None:
        if self._sync is not None:
            self._sync.dispose()
        if self._worker is not None:
            self._worker.stop()
        if self._async is not None:
            await self._async.dispose()


def alembic_config() -> Any:
    """Alembic's configuration, pointing at the migrations shipped inside the package."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


async def _on_server(server_url: str, sql: str) -> None:
    import asyncpg

    base = make_url(server_url)
    conn = await asyncpg.connect(
        host=base.host or "127.0.0.1",
        port=base.port or 5432,
        user=base.username or "postgres",
        password=base.password,
        database=base.database or "postgres",
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _check_name(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ConfigError(f"{name!r} is not a plain database name")
    return name


async def create_database(server_url: str, name: str) -> str:
    """Create the empty PostgreSQL database `name` on `server_url`'s server; its URL."""
    await _on_server(server_url, f'CREATE DATABASE "{_check_name(name)}"')
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def drop_database(server_url: str, name: str) -> None:
    """Drop the PostgreSQL database `name` (for tests and benchmarks), connections and all."""
    await _on_server(server_url, f'DROP DATABASE IF EXISTS "{_check_name(name)}" WITH (FORCE)')
