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
from sqlalchemy.dialects import postgresql

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
    with op.batch_alter_table("opportunities") as batch:
        for column in _method_opportunity_columns():
            batch.add_column(column)


def _method_opportunity_columns() -> list[sa.Column[object]]:
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    return [
        sa.Column("requirements_on", sa.Date(), nullable=True),
        sa.Column("negotiation_on", sa.Date(), nullable=True),
        sa.Column("close_method", sa.String(length=32), nullable=True),
        sa.Column("negotiation_notes", sa.Text(), nullable=True),
        sa.Column("addons", sa.Text(), nullable=True),
        sa.Column("contract_on", sa.Date(), nullable=True),
        sa.Column("contract_review", json_type, nullable=True),
        sa.Column("produced_on", sa.Date(), nullable=True),
        sa.Column("delivered_on", sa.Date(), nullable=True),
        sa.Column("accepted_on", sa.Date(), nullable=True),
        sa.Column("referral_note", sa.Text(), nullable=True),
    ]


def _method_down() -> None:
    with op.batch_alter_table("opportunities") as batch:
        for column in reversed(_method_opportunity_columns()):
            batch.drop_column(column.name)
    op.drop_table("swot_entries")
    op.drop_table("fab_entries")


# --- nudges, digests, outbox, scheduler --------------------------------------------------------
_OPPORTUNITY_SCAN_INDEXES = (
    ("ix_opportunities_org_id_stage_last_activity_at", ["org_id", "stage", "last_activity_at"]),
    ("ix_opportunities_org_id_stage_stage_entered_at", ["org_id", "stage", "stage_entered_at"]),
    ("ix_opportunities_org_id_next_step_due", ["org_id", "next_step_due"]),
    ("ix_opportunities_org_id_created_at", ["org_id", "created_at"]),
    ("ix_opportunities_owner_id_stage_currency_amount",
     ["owner_id", "stage", "currency", "amount"]),
)


def _delivery_up() -> None:
    for name, columns in _OPPORTUNITY_SCAN_INDEXES:
        op.create_index(name, "opportunities", columns, unique=False)
    with op.batch_alter_table("digest_subscriptions") as batch:
        batch.add_column(sa.Column("minute", sa.Integer(), server_default="30", nullable=False))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("parts_sent", sa.Integer(), server_default="0",
                                   nullable=False))
    op.create_table(
        "stage_norms",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("usual_days", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("sample", sa.Integer(), server_default="0", nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_stage_norms_org_id_orgs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stage_norms")),
        sa.UniqueConstraint("org_id", "stage", name=op.f("uq_stage_norms_org_id_stage")),
    )


def _delivery_down() -> None:
    op.drop_table("stage_norms")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("parts_sent")
        batch.drop_column("lease_until")
        batch.drop_column("claimed_by")
    with op.batch_alter_table("digest_subscriptions") as batch:
        batch.drop_column("minute")
    for name, _columns in reversed(_OPPORTUNITY_SCAN_INDEXES):
        op.drop_index(name, table_name="opportunities")


# --- Slack ---------------------------------------------------------------------------------------
def _slack_up() -> None:
    pass


def _slack_down() -> None:
    pass


# --- Telegram ------------------------------------------------------------------------------------
def _telegram_up() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.create_table(
        "telegram_keyboards",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=16), nullable=False),
        sa.Column("bot_id", sa.String(length=32), nullable=False),
        sa.Column("chat_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("options", json_type, nullable=False),
        sa.Column("controls", json_type, nullable=False),
        sa.Column("multi", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("selected", json_type, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("lang", sa.String(length=8), nullable=False),
        sa.Column("closed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telegram_keyboards")),
        sa.UniqueConstraint("key", name=op.f("uq_telegram_keyboards_key")),
    )
    op.create_index("ix_telegram_keyboards_bot_id_chat_id_closed", "telegram_keyboards",
                    ["bot_id", "chat_id", "closed"], unique=False)


def _telegram_down() -> None:
    op.drop_index("ix_telegram_keyboards_bot_id_chat_id_closed", table_name="telegram_keyboards")
    op.drop_table("telegram_keyboards")


# --- look-ups, analytics, import/export, privacy ------------------------------------------------
_EXTERNAL_ID_TABLES = ("accounts", "contacts", "opportunities", "invoices")
# fuzzy look-ups (store/search.py): pg_trgm GiST indexes, PostgreSQL only
_TRIGRAM_INDEXES = (("accounts", "name_key"), ("contacts", "name_key"), ("opportunities", "name"))


def _lookups_up() -> None:
    for table in _EXTERNAL_ID_TABLES:
        op.add_column(table, sa.Column("external_id", sa.String(length=128), nullable=True))
        op.create_index(f"uq_{table}_org_id_external_id", table, ["org_id", "external_id"],
                        unique=True)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for table, column in _TRIGRAM_INDEXES:
            op.create_index(f"ix_{table}_{column}_trgm", table, [column], unique=False,
                            postgresql_using="gist", postgresql_ops={column: "gist_trgm_ops"})
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("actor", sa.String(length=255), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("subject_type", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=True),
        sa.Column("detail", json_type, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_audit_log_org_id_orgs"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_audit_log_user_id_users"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_org_id", "audit_log", ["org_id"], unique=False)
    op.create_index("ix_audit_log_org_id_subject_type_subject_id", "audit_log",
                    ["org_id", "subject_type", "subject_id"], unique=False)


def _lookups_down() -> None:
    op.drop_table("audit_log")
    if op.get_bind().dialect.name == "postgresql":
        for table, column in _TRIGRAM_INDEXES:
            op.drop_index(f"ix_{table}_{column}_trgm", table_name=table)
    for table in _EXTERNAL_ID_TABLES:
        op.drop_index(f"uq_{table}_org_id_external_id", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("external_id")


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
