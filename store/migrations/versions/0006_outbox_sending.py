"""The part of an outbox post whose send has begun, committed before the send.

Revision ID: 0006_outbox_sending
Revises: 0005_lost

`outbox.sending_part`: the index of the message being sent, set (with the lease) in its own
commit right before the platform call and cleared with the record of the result. A row found
with it set was sent or not, nobody knows: recovery treats that part as sent rather than
posting it twice (bot/outbox.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006_outbox_sending"
down_revision: str | None = "0005_lost"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("sending_part", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("sending_part")
