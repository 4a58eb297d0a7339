"""Commands that are not dialogs: look-ups, `channel`, `digest` ...

Each module in this package has a `register(registry)` function; `load_commands` finds them all,
so a new command is a new module and nothing else changes. A handler runs inside the turn's unit
of work (the same database session, committed after it returns) and returns the messages to
send. It must not do I/O besides that session; slow rendering (charts, documents) is fine, the
front ends acknowledge the platform before they call the coach.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup
from sqlalchemy.orm import Session

from bot.settings import Settings
from dialogs.messages import Inbound, Outbound, TurnContext
from dialogs.render import Renderer
from store.conversations import Speaker

# the last word of a look-up typed in a channel that posts its answer there for everyone
SHARE_WORDS = frozenset({"share", "分享"})

# arguments that name whose data rather than a record (`pipeline team`, `spinmix @li`)
SCOPE_WORDS = frozenset({"team", "团队", "all", "全部"})


def names_people(arg: str) -> bool:
    """Whether a command's argument is one `@rep` or scope word rather than a record's name."""
    tokens = arg.split()
    return len(tokens) == 1 and (tokens[0].startswith("@") or tokens[0].casefold() in SCOPE_WORDS)


@dataclass(frozen=True)
class CommandRequest:
    """What a command handler gets: who asked, where, with what argument, in which language."""

    session: Session
    speaker: Speaker
    inbound: Inbound
    arg: str
    ctx: TurnContext
    now: datetime
    renderer: Renderer
    admins: tuple[str, ...] = ()

    def text(self, key: str, **params: object) -> Markup:
        """A catalog text, as markup: handed to a template or another text it is not escaped
        again (a `str` would be, and show `Drivers&#39;`)."""
        return self.renderer.text(self.ctx.lang, key, **params)


Handler = Callable[[CommandRequest], Sequence[Outbound]]


@dataclass(frozen=True)
class Claim:
    """A registered command takes over a flow command's invocation when `when(arg)` holds for
    its argument text: `spin @li` is the `spinmix` look-up, `spin Daqing` still the dialog.
    `command` is the flow command's canonical name, so its aliases in every language count."""

    command: str
    when: Callable[[str], bool]


@dataclass(frozen=True)
class Command:
    """`name` is the canonical (English) command; aliases come from the catalogs'
    `command.<name>` entries and help text from `help.cmd.<name>`. `order` sorts the help."""

    name: str
    handler: Handler
    order: int = 100
    hidden: bool = False  # not listed in the help (e.g. what a nudge's buttons send)
    # answers in the channel where it was typed (`channel` binds it); every other command's
    # answer in a channel goes to the asker alone unless they `share` it
    in_place: bool = False
    claims: tuple[Claim, ...] = ()  # flow commands' invocations this command answers instead


class Registry:
    def __init__(self, settings: Settings | None = None) -> None:
        self.commands: dict[str, Command] = {}
        #: the app's settings, for commands that need configuration (None: the defaults)
        self.settings = settings

    def add(self, name: str, handler: Handler, *, order: int = 100, hidden: bool = False,
            claims: Sequence[Claim] = (), in_place: bool = False) -> None:
        if name in self.commands:
            raise ValueError(f"command {name!r} is registered twice")
        self.commands[name] = Command(name, handler, order, hidden, in_place=in_place,
                                      claims=tuple(claims))

    def claimant(self, command: str, arg: str) -> str | None:
        """The registered command that answers `command arg` instead of `command` (the first
        registered whose claim on `command` matches `arg`), or None."""
        for registered in self.commands.values():
            if any(c.command == command and c.when(arg) for c in registered.claims):
                return registered.name
        return None


def load_commands(settings: Settings | None = None) -> Registry:
    """Every command module of this package, registered."""
    registry = Registry(settings)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(registry)
    return registry
