"""Drop the single-column `org_id` indexes that a composite index or unique constraint of the
same table already starts with.

Revision ID: 0004
Revises: 0003

Each of these tables has an index or unique constraint led by `org_id` (accounts and contacts
by name, opportunities by stage, invoices by number, nudges by subject, identities, team
channels, the audit log by subject), which serves every look-up by org and the cascade from
`orgs`; the extra index was one more B-tree write on every insert of a dialog turn or a nudge.
"""

from __future__ import annotations

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None

TABLES = ("identities", "accounts", "contacts", "opportunities", "invoices", "team_channels",
          "nudges", "audit_log")


def upgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_org_id", table_name=table)


def downgrade() -> None:
    for table in TABLES:
        op.create_index(f"ix_{table}_org_id", table, ["org_id"], unique=False)
