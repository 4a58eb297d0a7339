"""The Slack front end (slack-bolt AsyncApp): `/coach`, DMs, buttons, modals and App Home,
over HTTP (`POST /slack/events`) or Socket Mode. `bot/serve.py` calls `build_frontend`."""

from handlers.slack.frontend import SlackFrontEnd, build_frontend

__all__ = ["SlackFrontEnd", "build_frontend"]
