"""The Telegram front end (python-telegram-bot): see `frontend.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from handlers.telegram.frontend import TelegramConfigError, TelegramFrontEnd
from handlers.telegram.limiter import FloodLimiter, Limits

if TYPE_CHECKING:
    from bot.app import App

__all__ = ["FloodLimiter", "Limits", "TelegramConfigError", "TelegramFrontEnd", "build_frontend"]


def build_frontend(app: App) -> TelegramFrontEnd:
    """The Telegram front end for `salescoach serve` (needs TELEGRAM_BOT_TOKEN)."""
    return TelegramFrontEnd(app)
