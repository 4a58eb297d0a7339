"""The small guard in front of the platforms' webhook handlers (Bolt, python-telegram-bot):
a request whose body cannot be what the platform sends is refused with a 400 before any work,
with one log line that names the problem and never quotes the body, a token or a signature."""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.responses import JSONResponse, Response

log = logging.getLogger(__name__)

# Real Slack payloads and Telegram updates nest a dozen levels or so (a message in a reply, a
# rich-text list in a block); anything far deeper is not theirs and only costs recursion.
MAX_DEPTH = 64


class Malformed(ValueError):
    """The request is not one the platform would send; `reason` is safe to log and answer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def load_json(raw: bytes | str) -> Any:
    """`raw` as JSON, or Malformed (also for non-UTF-8 bytes and nesting beyond MAX_DEPTH)."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise Malformed("the body is nested too deeply") from None
    except ValueError:  # also UnicodeDecodeError
        raise Malformed("the body is not JSON") from None
    if too_deep(value):
        raise Malformed("the body is nested too deeply")
    return value


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether lists and objects in `value` nest more than `limit` levels (no recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node \
            if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list))
    return False


def refuse(platform: str, reason: str) -> Response:
    """The 400 for a malformed request, and its one log line."""
    log.warning("%s request refused (400): %s", platform, reason)
    return JSONResponse({"error": reason}, status_code=400)
