"""What `lost` records besides the reason code, and the stage `reopen` brings a deal back to.

Revision ID: 0005_lost
Revises: 0004

`opportunities.lost_details` (JSON: note, competitor, lesson — store.enums.LostDetail) and
`opportunities.lost_from` (the stage a deal was in when it was lost).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005_lost"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("opportunities") as batch:
        batch.add_column(sa.Column("lost_details", json_type, nullable=True))
        batch.add_column(sa.Column("lost_from", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("opportunities") as batch:
        batch.drop_column("lost_from")
        batch.drop_column("lost_details")
