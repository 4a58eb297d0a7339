"""`salescoach serve` with front-end settings that cannot work: a clear message, exit code 2,
no traceback (the front ends check their settings when they are built)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(("env", "message"), [
    ({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_SIGNING_SECRET must be set"),
    ({"TELEGRAM_BOT_TOKEN": "not-a-token"}, "TELEGRAM_BOT_TOKEN looks wrong"),
])
def test_unworkable_front_end_settings_exit_2_with_the_reason(
        tmp_path: Path, env: dict[str, str], message: str) -> None:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("SLACK_", "TELEGRAM_", "DATABASE_URL"))}
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60,
        env={**clean, **env, "PORT": "0", "PYTHONPATH": str(Path(__file__).parents[2])})
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
