"""What every messenger front end offers the rest of the bot: routes, a life cycle, and delivery.

The coach answers a user in the front end's own request/response path. Everything the bot says
on its own (nudges in the team channel, digests in a DM) goes through the outbox, which calls
`FrontEnd.deliver` and paces and retries according to the `DeliveryError` it gets back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from starlette.routing import BaseRoute

from dialogs.messages import Outbound


@dataclass(frozen=True)
class Target:
    """Where to post: a channel/group (`kind="channel"`, its platform id) or a user's private
    chat (`kind="user"`, the user's platform id), optionally inside a thread / as a reply."""

    org_key: str
    kind: Literal["channel", "user"]
    key: str
    thread: str | None = None


class DeliveryError(Exception):
    """A delivery that did not happen. `retry_after` (seconds) when the platform asked to wait
    (Slack 429, Telegram RetryAfter); `permanent` when retrying cannot help (the user blocked the
    bot, the channel is gone, the bot was removed): the target is then recorded as unreachable."""

    def __init__(self, reason: str, *, retry_after: float | None = None,
                 permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.permanent = permanent


class FrontEnd(Protocol):
    platform: str

    def routes(self) -> Sequence[BaseRoute]:
        """HTTP routes to mount in the ASGI app `salescoach serve` runs."""
        ...

    async def start(self) -> None:
        """Connect (Socket Mode, polling, webhook registration, command menus)."""
        ...

    async def stop(self) -> None:
        ...

    async def deliver(self, target: Target, messages: Sequence[Outbound]) -> list[str]:
        """Post `messages` (with their buttons and attachments) to `target`; return the
        platform's ids of the posted messages. Raise DeliveryError when it did not happen."""
        ...
