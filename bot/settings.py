"""Settings from the environment (and `.env`), read once by the composition root."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///salescoach.db"


class Settings(BaseSettings):
    """Every environment variable salescoach understands (see DESIGN.md, 'Environment')."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = Field(DEFAULT_DATABASE_URL, alias="DATABASE_URL")
    slack_bot_token: str | None = Field(None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: str | None = Field(None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: str | None = Field(None, alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field("https://slack.com/api/", alias="SLACK_API_URL")
    telegram_bot_token: str | None = Field(None, alias="TELEGRAM_BOT_TOKEN")
    telegram_api_url: str = Field("https://api.telegram.org/bot", alias="TELEGRAM_API_URL")
    telegram_webhook_url: str | None = Field(None, alias="TELEGRAM_WEBHOOK_URL")
    telegram_webhook_secret: str | None = Field(None, alias="TELEGRAM_WEBHOOK_SECRET")
    lang: Literal["en", "zh"] = Field("en", alias="SALESCOACH_LANG")
    tz: str = Field("UTC", alias="SALESCOACH_TZ")
    admins: str = Field("", alias="SALESCOACH_ADMINS")
    # the coach's clock starts at this instant and runs on from there (a demo, or a script
    # replayed against a dated demo: `salescoach demo --at` with the same time)
    now: datetime | None = Field(None, alias="SALESCOACH_NOW")
    auto_migrate: bool = Field(True, alias="SALESCOACH_AUTO_MIGRATE")
    # a directory of the company's own document templates (proposal_md.j2 ...), searched first
    templates_dir: Path | None = Field(None, alias="SALESCOACH_TEMPLATES_DIR")
    host: str = Field("127.0.0.1", alias="HOST")
    port: int = Field(8080, alias="PORT")

    @field_validator("templates_dir")
    @classmethod
    def _existing_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"SALESCOACH_TEMPLATES_DIR={str(value)!r} is not a directory")
        return value

    @field_validator("tz")
    @classmethod
    def _known_tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"SALESCOACH_TZ={value!r} is not a known time zone (try 'Asia/Shanghai' or 'UTC')"
            ) from exc
        return value

    @property
    def admin_ids(self) -> list[str]:
        return [part.strip() for part in self.admins.split(",") if part.strip()]
