"""Indexes measured since 0002: snoozed nudges, and GIN instead of GiST for fuzzy look-ups.

Revision ID: 0003
Revises: 0002

- `ix_nudges_snoozed` (partial: only nudges that were ever snoozed): every nudge rule's "not
  snoozed" check read all of the org's nudges, so a pass grew with the nudge history.
- pg_trgm indexes of the fuzzy look-ups (store/search.py) become GIN: substring (`LIKE`) and
  word-similarity (`q <% name`) look-ups read 3-10x fewer pages than with GiST's nearest-name
  scan (benchmarks/lookups.py). PostgreSQL only.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None

_TRIGRAM_INDEXES = (("accounts", "name_key"), ("contacts", "name_key"), ("opportunities", "name"))
_SNOOZED = sa.text("snoozed_until IS NOT NULL")


def _trigram(kind: str) -> None:
    for table, column in _TRIGRAM_INDEXES:
        name = f"ix_{table}_{column}_trgm"
        op.drop_index(name, table_name=table)
        op.create_index(name, table, [column], unique=False, postgresql_using=kind,
                        postgresql_ops={column: f"{kind}_trgm_ops"})


def upgrade() -> None:
    op.create_index("ix_nudges_snoozed", "nudges",
                    ["org_id", "subject_type", "subject_id", "snoozed_until"], unique=False,
                    postgresql_where=_SNOOZED, sqlite_where=_SNOOZED)
    if op.get_bind().dialect.name == "postgresql":
        _trigram("gin")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _trigram("gist")
    op.drop_index("ix_nudges_snoozed", table_name="nudges")
