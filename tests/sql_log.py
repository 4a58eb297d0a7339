"""The SQL statements a piece of code runs, for tests that bound how many it may need."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import event
from sqlalchemy.orm import Session


@contextlib.contextmanager
def statements_run(session: Session) -> Iterator[list[str]]:
    """The statements `session` runs inside the block, in order (the list fills as they run)."""
    statements: list[str] = []
    connection = session.connection()

    def seen(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(connection, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(connection, "before_cursor_execute", seen)
