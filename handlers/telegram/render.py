"""Neutral messages as Telegram messages: HTML text in pieces that fit, and inline keyboards.

The core's markup (`<b>`, `<i>`, `<code>`, entities for `& < >`) is Telegram's HTML parse mode
as is. What this module adds is the platform's shape: at most 4,096 characters per message (split
at paragraph, then line, then word boundaries, tags closed and reopened across a split), button
texts in plain text, and `callback_data` within 64 bytes (a short keyboard key and an index;
the values behind them are kept in the store, see `keyboards.py`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from dialogs.messages import Mention

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64
# room kept in every piece for the tags closed at its end and reopened at the next one's start
_TAG_ROOM = 40

# a mention's link is one token: a piece never ends inside it
_TOKEN = re.compile(r'<a href="[^"<>]*">[^<]*</a>'
                    r"|</?(?:b|i|code)>|&#?\w+;|\n|[ \t]+|[^\s<&]+|[<&]")
_OPEN = re.compile(r"<(b|i|code)>")
_CLOSE = re.compile(r"</(b|i|code)>")


_MARKUP = re.compile(r"<(/?)(b|i|code)>|&(?:#\d+|#x[0-9A-Fa-f]+|[A-Za-z]+);|[<>&]")


def telegram_html(text: str) -> str:
    """The core's markup made safe for Telegram's parser whatever a catalog text holds: a
    bare `<`, `>` or `&` becomes an entity, and the b/i/code tags are balanced."""
    out: list[str] = []
    stack: list[str] = []
    last = 0
    for match in _MARKUP.finditer(text):
        out.append(text[last:match.start()])
        last = match.end()
        token = match.group(0)
        closing, name = match.group(1), match.group(2)
        if name is None:
            out.append(html.escape(token, quote=False) if len(token) == 1 else token)
        elif not closing:
            stack.append(name)
            out.append(token)
        elif name in stack:
            while stack:  # close what was opened inside it, then it
                inner = stack.pop()
                out.append(f"</{inner}>")
                if inner == name:
                    break
        # a closing tag that was never opened is dropped
    out.append(text[last:])
    out.extend(f"</{name}>" for name in reversed(stack))
    return "".join(out)


# how a name's special characters may stand in the core's escaped text
_NAME_CHAR = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': '(?:"|&#34;|&quot;)',
              "'": "(?:'|&#39;|&#x27;)"}


def with_mentions(text: str, mentions: Sequence[Mention]) -> str:
    """Telegram HTML `text` with each Telegram mention's `@name` made a link to the user
    (`tg://user?id=…`, which notifies them). Mentions for other platforms stay names."""
    found = sorted(((m.name, m.user_key) for m in mentions
                    if m.platform == "telegram" and m.name and m.user_key.isdigit()),
                   key=lambda item: -len(item[0]))  # "@Li Lei" before "@Li"
    if not found:
        return text
    alternatives = "|".join(
        "(" + "".join(_NAME_CHAR.get(c, re.escape(c)) for c in name) + ")"
        for name, _id in found)
    pattern = re.compile(f"@(?:{alternatives})(?!\\w)")

    def link(match: re.Match[str]) -> str:
        user_id = found[(match.lastindex or 1) - 1][1]
        return f'<a href="tg://user?id={user_id}">{match.group(0)}</a>'

    return pattern.sub(link, text)


def utf16_len(text: str) -> int:
    """Telegram counts message length in UTF-16 code units (an emoji is two)."""
    return len(text.encode("utf-16-le")) // 2


def _tokens(text: str, limit: int) -> list[str]:
    out: list[str] = []
    for token in _TOKEN.findall(text):
        while utf16_len(token) > limit:  # one endless word: cut it by characters
            cut = limit // 2
            out.append(token[:cut])
            token = token[cut:]
        out.append(token)
    return out


def split_html(text: str, limit: int = MAX_TEXT) -> list[str]:
    """`text` in pieces of at most `limit` characters, each one valid HTML on its own."""
    if utf16_len(text) <= limit:
        return [text]
    budget = limit - _TAG_ROOM
    tokens = _tokens(text, budget // 2)
    pieces: list[str] = []
    stack: list[str] = []  # tags open where the current piece starts
    start = 0
    while start < len(tokens):
        size = sum(len(f"<{t}>") for t in stack)
        end = start
        last_para = last_line = last_space = None
        while end < len(tokens) and size + utf16_len(tokens[end]) <= budget:
            token = tokens[end]
            size += utf16_len(token)
            end += 1
            if token == "\n":
                if end >= 2 and tokens[end - 2] == "\n":
                    last_para = end
                last_line = end
            elif token.isspace():
                last_space = end
        if end < len(tokens):  # break at the best boundary in the second half of the piece
            half = start + (end - start) // 2
            for candidate in (last_para, last_line, last_space):
                if candidate is not None and candidate > half:
                    end = candidate
                    break
        chunk = tokens[start:end]
        open_tags = list(stack)
        for token in chunk:
            if m := _OPEN.fullmatch(token):
                open_tags.append(m.group(1))
            elif (m := _CLOSE.fullmatch(token)) and open_tags and open_tags[-1] == m.group(1):
                open_tags.pop()
        body = "".join(f"<{t}>" for t in stack) + "".join(chunk).strip()
        body += "".join(f"</{t}>" for t in reversed(open_tags))
        if _visible(body):
            pieces.append(body)
        stack = open_tags
        start = end
    return pieces or [text[:limit]]


def _visible(piece: str) -> bool:
    return bool(re.sub(r"</?(?:b|i|code)>", "", piece).strip())


def plain_label(label: str) -> str:
    """A button's text: plain text (the core's labels may carry entities)."""
    return html.unescape(re.sub(r"</?(?:b|i|code)>", "", label)).strip() or "·"


def escape_label(label: str) -> str:
    """A label as Telegram HTML (escaped exactly once)."""
    return html.escape(plain_label(label), quote=False)


# ---- callback data ---------------------------------------------------------------------------
# "<op>:<keyboard key>:<index>[:<question key>]": a = an answer, c = a control, t = tick/untick
# (multi-choice), d = done (multi-choice); the question key (`Outbound.key`, 12 characters) on a
# dialog's question. 1 + 1 + 16 + 1 + 3 + 1 + 12 bytes at most, whatever the flow.

OPS = ("a", "c", "t", "d")


@dataclass(frozen=True)
class Tap:
    op: str
    key: str
    index: int
    question: str | None = None


def callback_data(op: str, key: str, index: int = 0, question: str | None = None) -> str:
    data = f"{op}:{key}:{index}" + (f":{question}" if question else "")
    assert len(data.encode()) <= MAX_CALLBACK_DATA, data
    return data


def parse_callback(data: str | None) -> Tap | None:
    if not data:
        return None
    parts = data.split(":")
    if len(parts) not in (3, 4) or parts[0] not in OPS or not parts[2].isdigit() \
            or not parts[1] or (len(parts) == 4 and not parts[3]):
        return None
    return Tap(parts[0], parts[1], int(parts[2]), parts[3] if len(parts) == 4 else None)


def _rows(buttons: list[InlineKeyboardButton], labels: Sequence[str]) -> list[
        list[InlineKeyboardButton]]:
    """Short labels two or three to a row, long ones alone."""
    longest = max((utf16_len(label) for label in labels), default=0)
    per_row = 3 if longest <= 8 else 2 if longest <= 18 else 1
    return [buttons[i:i + per_row] for i in range(0, len(buttons), per_row)]


def keyboard(key: str, options: Sequence[tuple[str, str]], controls: Sequence[tuple[str, str]],
             *, multi: bool = False, selected: Sequence[int] = (),
             done_label: str = "Done", question: str | None = None) -> InlineKeyboardMarkup:
    """The inline keyboard of a question: the answers (ticked ones marked ✓ in multi-choice,
    then a Done button), then the controls in one row; every button carries `question`, the
    key of the question it answers."""
    labels = [plain_label(label) for _value, label in options]
    ticked = set(selected)
    if multi:
        shown = [f"✓ {label}" if i in ticked else label for i, label in enumerate(labels)]
        buttons = [InlineKeyboardButton(text, callback_data=callback_data("t", key, i, question))
                   for i, text in enumerate(shown)]
    else:
        shown = labels
        buttons = [InlineKeyboardButton(text, callback_data=callback_data("a", key, i, question))
                   for i, text in enumerate(shown)]
    rows = _rows(buttons, shown)
    if multi:
        rows.append([InlineKeyboardButton(f"✔ {done_label}", callback_data=callback_data(
            "d", key, 0, question))])
    if controls:
        rows.append([InlineKeyboardButton(plain_label(label),
                                          callback_data=callback_data("c", key, i, question))
                     for i, (_value, label) in enumerate(controls)])
    return InlineKeyboardMarkup(rows)


def link_keyboard(label: str, url: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(plain_label(label), url=url)]])
