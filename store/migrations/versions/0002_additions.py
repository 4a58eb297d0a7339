"""Schema additions after the initial domain: one section per area of work.

Revision ID: 0002
Revises: 0001

Each area keeps its changes in its own pair of functions so they can be written independently;
upgrade runs them in order and downgrade in reverse. Keep every change here in step with
store/models.py (tests/store/test_models.py compares the migrated schema with the models).
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401  (used by the sections as they fill in)
from alembic import op  # noqa: F401

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


# --- the six-step method (dialogs, funnel, proposals) ------------------------------------------
def _method_up() -> None:
    pass


def _method_down() -> None:
    pass


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
