"""The coach in a terminal: interactive, or one input line per turn from a pipe."""

from __future__ import annotations

import asyncio
import html
import logging
import re
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from bot.coach import Coach
from dialogs.messages import Attachment, Inbound, Outbound
from store import limits

log = logging.getLogger(__name__)

QUIT = {"quit", "exit", "/quit", "/exit", "退出"}
_TAGS = re.compile(r"<(/?)(b|i|code)>")


def to_terminal(markup: str, *, color: bool) -> str:
    """Neutral markup as terminal text: bold/italic as ANSI when `color`, else plain.

    The text itself never reaches the terminal with a control character in it (an ESC or BEL
    in a stored name, or an entity like `&#27;`): only the coach's own ANSI codes do."""
    parts = _TAGS.split(markup)  # text, closing, name, text, closing, name, ..., text
    out = [safe(html.unescape(parts[0]))]
    for i in range(1, len(parts), 3):
        closing, name, after = parts[i], parts[i + 1], parts[i + 2]
        if color:
            out.append("\033[0m" if closing else
                       {"b": "\033[1m", "i": "\033[3m", "code": "\033[36m"}[name])
        out.append(safe(html.unescape(after)))
    return "".join(out)


def safe(text: str) -> str:
    """Text as it may be written to a terminal: no control characters but newline and tab."""
    return limits.clean(text)


FILES_DIR = "salescoach-files"


def save_attachment(folder: Path, attachment: Attachment) -> Path:
    """Write an attachment into `folder` (created if needed) under its own name, never over an
    existing file: `name.docx`, then `name-1.docx`, `name-2.docx` ..."""
    folder.mkdir(parents=True, exist_ok=True)
    # only the last part of the name, so a name can never point outside the folder
    name = re.sub(r"[\x00-\x1f/\\]", "_", attachment.filename).lstrip(".")
    base = Path(name or "attachment")
    stem, suffix = base.stem or "attachment", base.suffix
    for number in range(10_000):
        target = folder / (f"{stem}{suffix}" if number == 0 else f"{stem}-{number}{suffix}")
        try:
            with target.open("xb") as out:  # "x": fails if the file exists, even in a race
                out.write(attachment.data)
        except FileExistsError:
            continue
        return target.resolve()
    raise FileExistsError(f"{folder}: too many files named {base}")


def render(message: Outbound, *, color: bool) -> str:
    lines = [to_terminal(message.text, color=color)]
    for number, option in enumerate(message.options, start=1):
        lines.append(f"  {number}. {safe(html.unescape(option.label))}")
    return "\n".join(lines)


class Console:
    """Reads lines, hands them to the coach, prints the replies."""

    def __init__(
        self,
        coach: Coach,
        *,
        user: str,
        org: str = "console",
        lang: str | None = None,
        stdin: TextIO = sys.stdin,
        stdout: TextIO = sys.stdout,
        interactive: bool | None = None,
        on_turn: Callable[[float, str], None] | None = None,
        files_dir: Path | None = None,
    ) -> None:
        self.coach = coach
        self.user = user
        self.org = org
        self.lang = lang
        self.stdin = stdin
        self.stdout = stdout
        self.interactive = stdin.isatty() if interactive is None else interactive
        self.color = self.interactive and stdout.isatty()
        self.on_turn = on_turn
        # where received files (a generated proposal ...) are saved; relative to the working
        # directory at the time they arrive
        self.files_dir = files_dir if files_dir is not None else Path(FILES_DIR)

    def _inbound(self, text: str) -> Inbound:
        return Inbound(platform="console", org_key=self.org, user_key=self.user, text=text,
                       user_name=self.user, session_lang=self.lang)

    def _print(self, messages: tuple[Outbound, ...] | list[Outbound]) -> None:
        for message in messages:
            text = render(message, color=self.color)
            for attachment in message.attachments:
                try:
                    text += f"\n📎 {save_attachment(self.files_dir, attachment)}"
                except OSError as exc:
                    log.warning("could not save %s: %s", attachment.filename, exc)
                    text += f"\n📎 {safe(attachment.filename)}: ✖ {exc.strerror or exc}"
            self.stdout.write(text + "\n\n")
        self.stdout.flush()

    async def _read(self) -> str | None:
        if self.interactive:
            try:
                return await asyncio.to_thread(input, "› ")
            except EOFError:
                return None
        line = await asyncio.to_thread(self.stdin.readline)
        return None if line == "" else line.rstrip("\r\n")

    async def run(self) -> None:
        greeting = await self.coach.greet(self._inbound(""))
        self._print(greeting.messages)
        lang = greeting.lang
        while True:
            line = await self._read()
            if line is None or line.strip().casefold() in QUIT:
                break
            if not self.interactive:
                self.stdout.write(f"› {safe(line)}\n")
            try:
                reply = await self.coach.handle(self._inbound(line))
            except Exception:
                ref = uuid.uuid4().hex[:8]
                log.exception("console turn failed (ref %s)", ref)
                self._print([self.coach.error_reply(lang, ref)])
                continue
            lang = reply.lang
            if self.lang:  # `lang zh` typed in a session started with --lang: it follows
                self.lang = lang
            self._print(reply.messages)
