"""Schema additions after the initial domain: one section per area of work.

Revision ID: 0002
Revises: 0001

Each area keeps its changes in its own pair of functions so they can be written independently;
upgrade runs them in order and downgrade in reverse. Keep every change here in step with
store/models.py (tests/store/test_models.py compares the migrated schema with the models).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


# --- the six-step method (dialogs, funnel, proposals) ------------------------------------------
def _opportunity_child(name: str, *columns: sa.schema.SchemaItem) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("opportunity_id", sa.Uuid(), nullable=False),
        *columns,
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(["opportunity_id"], ["opportunities.id"],
                                name=op.f(f"fk_{name}_opportunity_id_opportunities"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f(f"fk_{name}_org_id_orgs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")),
    )
    op.create_index(f"ix_{name}_opportunity_id", name, ["opportunity_id"], unique=False)
    op.create_index(f"ix_{name}_org_id", name, ["org_id"], unique=False)


def _method_up() -> None:
    _opportunity_child(
        "fab_entries",
        sa.Column("product", sa.String(), nullable=False),
        sa.Column("feature", sa.Text(), nullable=False),
        sa.Column("advantage", sa.Text(), nullable=True),
        sa.Column("benefit", sa.Text(), nullable=True),
        sa.Column("need_id", sa.Uuid(), nullable=True),
        sa.Column("position", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["need_id"], ["needs.id"],
                                name=op.f("fk_fab_entries_need_id_needs"), ondelete="SET NULL"),
    )
    _opportunity_child(
        "swot_entries",
        sa.Column("quadrant", sa.String(length=1), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
    )


def _method_down() -> None:
    op.drop_table("swot_entries")
    op.drop_table("fab_entries")


# --- nudges, digests, outbox, scheduler --------------------------------------------------------
def _delivery_up() -> None:
    pass


def _delivery_down() -> None:
    pass


# --- Slack ---------------------------------------------------------------------------------------
def _slack_up() -> None:
    pass


def _slack_down() -> None:
    pass


# --- Telegram ------------------------------------------------------------------------------------
def _telegram_up() -> None:
    pass


def _telegram_down() -> None:
    pass


# --- look-ups, analytics, import/export, privacy ------------------------------------------------
def _lookups_up() -> None:
    pass


def _lookups_down() -> None:
    pass


def upgrade() -> None:
    _method_up()
    _delivery_up()
    _slack_up()
    _telegram_up()
    _lookups_up()


def downgrade() -> None:
    _lookups_down()
    _telegram_down()
    _slack_down()
    _delivery_down()
    _method_down()
