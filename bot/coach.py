"""The conversation service every front end calls: Inbound -> Outbounds, one unit of work.

Each turn is one call of `Database.run`: find the speaker and their current dialog, let the pure
engine advance it, write what it recorded and the new state (version-checked), commit — and only
then are the replies handed back to be sent. So an answer is durable before the next question
goes out, and a process killed between two turns resumes at the same question.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from markupsafe import Markup
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot import method
from bot.commands import CommandRequest, Registry
from bot.metrics import Metrics
from dialogs.engine import Engine, FlowContext, Log, Remove, Save, Turn
from dialogs.messages import Inbound, Option, Outbound
from dialogs.render import Renderer
from dialogs.state import DialogState
from store import conversations as conv
from store import funnel, limits, permissions, records, search
from store.db import Database
from store.permissions import Access

log = logging.getLogger(__name__)

# built in; flows name their own command (`command:` in the flow file) and other commands
# register in bot/commands/
BUILTIN_COMMANDS = {"resume": 80, "lang": 95, "help": 99}
REFERENCE_CAP = 5000


@dataclass(frozen=True)
class Reply:
    """What a turn produced: the messages, and the language they are in."""

    messages: tuple[Outbound, ...]
    lang: str
    # a press that was refused, and why: "closed" (not the question open now, or not the
    # presser's) or "invalid" (not one of the question's answers); nothing was changed
    refused: str | None = None


#: a front end's step inside a turn's unit of work (see `Coach.handle`)
AfterTurn = Callable[[Session, Reply], Reply]


class TurnRejected(Exception):
    """Raised by an `after` step to roll the whole turn back (what the input answers was
    closed meanwhile, the update was handled already): `Coach.handle` re-raises it, counted as
    a rejected turn rather than an error."""


class PressRefused(TurnRejected):
    """A press that answers nothing: the turn is rolled back (no answer, no event recorded)
    and `reply` says why."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.refused)
        self.reply = reply


#: the kinds of message whose buttons answer the dialog's open question
QUESTION_KINDS = frozenset({"question", "confirm"})


def question_key(user_id: object, state: DialogState) -> str:
    """The key of the question `state` waits on, asked of user `user_id`: a digest of who is
    asked, which dialog and everything that decides where it stands (not whether it waits for
    `resume`), so any answer, skip, back or edit makes it another question."""
    data = state.to_json()
    data.pop("paused", None)
    raw = f"{user_id}|".encode() + json.dumps(data, sort_keys=True, default=str,
                                              ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(hashlib.blake2b(raw, digest_size=9).digest()).decode()


def keyed(messages: list[Outbound] | tuple[Outbound, ...], user_id: object,
          state: DialogState) -> list[Outbound]:
    """`messages` with the key of `state`'s question on those that ask it with buttons."""
    if state.status != "active":
        return list(messages)
    key: str | None = None
    out = []
    for m in messages:
        if m.kind in QUESTION_KINDS and (m.options or m.controls) and m.key is None:
            key = key or question_key(user_id, state)
            m = replace(m, key=key)
        out.append(m)
    return out


class Coach:
    """Runs turns. Built once by the composition root; holds no per-user state."""

    def __init__(
        self,
        db: Database,
        engine: Engine,
        renderer: Renderer,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        default_lang: str = "en",
        default_tz: str = "UTC",
        default_currency: str = "CNY",
        metrics: Metrics | None = None,
        registry: Registry | None = None,
        admins: tuple[str, ...] = (),
    ) -> None:
        self.db = db
        # above this many customers (or opportunities) in an org, a dialog's "which one?"
        # searches for the typed name instead of comparing it with every name
        self.reference_cap = REFERENCE_CAP
        self.registry = registry or Registry()
        self.admins = admins
        self.metrics = metrics
        self.engine = engine
        self.r = renderer
        self.clock = clock
        self.default_lang = default_lang
        self.default_tz = default_tz
        self.default_currency = default_currency
        # command name -> flow id, for commands that open a dialog
        self.flow_commands = {flow.spec.command: flow.id for flow in engine.flows.flows.values()
                              if flow.spec.command}
        order = dict(BUILTIN_COMMANDS)
        order.update({flow.spec.command: flow.spec.order
                      for flow in engine.flows.flows.values() if flow.spec.command})
        for name, command in self.registry.commands.items():
            if name in order:
                raise ValueError(f"command {name!r} is both registered and built in or a flow")
            order[name] = command.order
            for claim in command.claims:
                if claim.command in BUILTIN_COMMANDS or claim.command in self.registry.commands:
                    raise ValueError(f"command {name!r} claims {claim.command!r}, which is not "
                                     "a flow command")
        #: every command, in the order the help lists them
        self.command_names = tuple(sorted(order, key=lambda n: (order[n], n)))
        self.help_names = tuple(n for n in self.command_names if n not in self.registry.commands
                                or not self.registry.commands[n].hidden)
        for flow in engine.flows.flows.values():
            unknown = set(flow.spec.uses) - method.FACT_SETS
            if unknown:
                raise ValueError(f"{flow.source}: `uses` names unknown fact sets {sorted(unknown)}")
            if flow.spec.report and flow.spec.report not in method.REPORTS:
                raise ValueError(f"{flow.source}: `report: {flow.spec.report}` is not a report")
        self.commands: dict[str, str] = {}  # alias (any language) -> command name
        for catalog in renderer.catalogs.values():
            for name in self.command_names:
                for alias in catalog.get(f"command.{name}", name).split("|"):
                    self.commands[alias.strip().casefold()] = name

    async def handle(self, inbound: Inbound, *, after: AfterTurn | None = None) -> Reply:
        """One turn. Replies come back only after what they confirm is committed.

        `after(session, reply)` runs inside the same unit of work once the turn is done and
        returns the reply to hand back: a front end records what it needs to send the reply
        (Telegram's keyboard rows) in the turn's own commit instead of a transaction of its own.
        """
        now = self.clock()
        started = time.perf_counter()
        outcome = "ok"
        # NUL, ESC, BEL ... never get further than this: no column holds a NUL on PostgreSQL,
        # and an echo of the answer must not drive the terminal it is shown on
        inbound = replace(inbound, text=limits.clean(inbound.text),
                          user_name=limits.clean(inbound.user_name, multiline=False)
                          if inbound.user_name else inbound.user_name)
        try:
            return await self.db.run(self._then, self._turn, after, inbound, now)
        except PressRefused as refused:
            outcome = "refused"
            return refused.reply
        except conv.StaleSession:
            # Another input for the same dialog won the race; show where it stands now.
            outcome = "stale"
            return await self.db.run(self._then, self._stale, after, inbound, now)
        except TurnRejected:
            outcome = "rejected"
            raise
        except IntegrityError:
            # A unique value (an invoice number) recorded by someone else since the answer
            # was checked: the turn is rolled back; say so and ask again.
            outcome = "conflict"
            log.warning("turn rolled back on a unique constraint", exc_info=True)
            return await self.db.run(self._then, self._conflict, after, inbound, now)
        except Exception:
            outcome = "error"
            raise
        finally:
            if self.metrics is not None:
                self.metrics.turns_total.labels(inbound.platform, outcome).inc()
                self.metrics.turn_seconds.labels(inbound.platform).observe(
                    time.perf_counter() - started)

    async def greet(self, inbound: Inbound, *, after: AfterTurn | None = None) -> Reply:
        """The welcome for a front end that starts a conversation (console start, /start);
        `after` as for `handle`."""
        return await self.db.run(self._then, self._greet, after, inbound, self.clock())

    def error_reply(self, lang: str, ref: str) -> Outbound:
        return Outbound(self.r.text(lang, "error.internal", ref=ref), kind="error")

    # ---- inside the unit of work ------------------------------------------------------------

    @staticmethod
    def _then(session: Session, turn: Callable[[Session, Inbound, datetime], Reply],
              after: AfterTurn | None, inbound: Inbound, now: datetime) -> Reply:
        reply = turn(session, inbound, now)
        return reply if after is None else after(session, reply)

    def _speaker(self, session: Session, inbound: Inbound, now: datetime,
                 known_new: bool = False) -> conv.Speaker:
        lang = inbound.lang_hint if inbound.lang_hint in self.r.languages else None
        return self._in_session_lang(inbound, conv.ensure_speaker(
            session, platform=inbound.platform, org_key=inbound.org_key,
            user_key=inbound.user_key, display_name=inbound.user_name or inbound.user_key,
            lang=lang, default_lang=self.default_lang, default_tz=self.default_tz, now=now,
            role="admin" if inbound.user_key in self.admins else "rep", known_new=known_new,
        ))

    def _in_session_lang(self, inbound: Inbound, speaker: conv.Speaker) -> conv.Speaker:
        if inbound.session_lang in self.r.languages and inbound.session_lang != speaker.lang:
            return replace(speaker, lang=inbound.session_lang)
        return speaker

    def _ctx(self, session: Session | None, speaker: conv.Speaker, now: datetime,
             lang: str | None = None, candidates: tuple[tuple[str, str], ...] = (),
             facts: dict[str, object] | None = None) -> FlowContext:
        tz = ZoneInfo(speaker.tz or speaker.org_tz or self.default_tz)

        @functools.cache  # read only when a "which one?" question is asked or answered
        def suggest(kind: str, scope: str | None, via: str | None) -> tuple[tuple[str, str], ...]:
            assert session is not None
            if kind == "contact" and scope is None and via is not None:
                scope = funnel.contact_account(session, via)  # the opportunity's customer
            return tuple(funnel.suggestions(session, speaker.org_id, speaker.user_id, kind,
                                            scope))

        return FlowContext(
            now=now.astimezone(tz),
            lang=lang or speaker.lang or speaker.org_lang or self.default_lang,
            user_id=str(speaker.user_id),
            candidates=candidates,
            default_currency=self.default_currency,
            facts=facts or {},
            suggest=suggest if session is not None else None,
        )

    def _greet(self, session: Session, inbound: Inbound, now: datetime) -> Reply:
        speaker = self._speaker(session, inbound, now)
        ctx = self._ctx(session, speaker, now)
        out = [Outbound(self.r.text(ctx.lang, "welcome", name=speaker.display_name))]
        current = conv.current_dialog(session, speaker.user_id)
        if current is not None:
            state = DialogState.from_json(current.state)
            out.append(Outbound(self.r.text(
                ctx.lang, "welcome.open", title=self.engine.title(state, ctx.lang),
                progress=self.engine.progress(state, ctx))))
            if not state.paused:  # as the greeting says: it waits for `resume`
                conv.save_dialog(session, current, state=replace(state, paused=True).to_json(),
                                 status=state.status, now=now)
        return Reply(tuple(out), ctx.lang)

    def _stale(self, session: Session, inbound: Inbound, now: datetime,
               why: str = "stale") -> Reply:
        speaker = self._speaker(session, inbound, now)
        ctx = self._ctx(session, speaker, now)
        out = [Outbound(self.r.text(ctx.lang, why), kind="error")]
        current = conv.current_dialog(session, speaker.user_id)
        if current is not None:
            out.extend(self._ask(session, speaker, DialogState.from_json(current.state), now,
                                 ctx))
        return Reply(tuple(out), ctx.lang)

    def _conflict(self, session: Session, inbound: Inbound, now: datetime) -> Reply:
        return self._stale(session, inbound, now, why="conflict")

    def _turn(self, session: Session, inbound: Inbound, now: datetime) -> Reply:
        if inbound.event_id and not conv.first_time(session, inbound.platform, inbound.event_id,
                                                    now):
            return Reply((), self.default_lang)  # a retry or a double click: already handled
        found = conv.speaker_and_dialog(session, inbound.platform, inbound.org_key,
                                        inbound.user_key)
        if found is not None:
            speaker, current = found
            speaker = self._in_session_lang(inbound, speaker)
        else:  # their first message: create them
            speaker = self._speaker(session, inbound, now, known_new=True)
            current = conv.current_dialog(session, speaker.user_id)
        if inbound.pressed and inbound.key is not None:
            self._check_press(session, speaker, current, inbound, now)
        text = inbound.text
        word, _, arg = text.strip().partition(" ")
        arg = arg.strip()
        slash = word.startswith("/")
        command = self.commands.get(word.lstrip("/").casefold())
        if current is not None and DialogState.from_json(current.state).paused:
            if inbound.pressed and command is None:  # a tap on its question: go on with it
                current = self._unpause(session, current, now)
            elif command is None or (command == "resume"
                                     and not self._whole_command(command, arg)):
                return self._paused(session, speaker, current, now)
            elif command != "resume":
                current = None  # paused: the line is a command, the dialog waits
        if current is not None and DialogState.from_json(current.state).held is not None:
            held = DialogState.from_json(current.state).held or ""
            current = self._release(session, current, now)
            choice = self._held_choice(text)
            if choice == "answer":
                return self._advance(session, speaker, current, held, now)
            if choice == "run":
                return self._turn(session, replace(inbound, text="/" + held, event_id=None), now)
        elif current is not None and command is not None and not slash and arg \
                and not self._answers(current, text) \
                and self._names_record(session, speaker, command, arg):
            return self._hold(session, speaker, current, text, now)
        if command is not None and (slash or current is None
                                    or (self._whole_command(command, arg)
                                        and not self._answers(current, text))):
            if command == "help":
                return self._help(speaker, now)
            if command == "lang":
                return self._lang(session, speaker, arg, current, now)
            if command == "resume":
                return self._resume(session, speaker, arg, now)
            if command in self.flow_commands:
                # a registered command may claim the invocation by its argument (`spin @rep`
                # is the SPIN-mix look-up; `spin Daqing` and a plain `spin` open the dialog)
                claimant = self.registry.claimant(command, arg)
                if claimant is not None:
                    return self._command(session, speaker, inbound, claimant, arg, now)
                return self._start(session, speaker, self.flow_commands[command], now, arg)
            return self._command(session, speaker, inbound, command, arg, now)
        if current is None or (slash and not self._control(word)):
            ctx = self._ctx(session, speaker, now)
            if slash or (len(text.split()) == 1 and text.strip()):
                unknown = Outbound(self.r.text(ctx.lang, "unknown", typed=text.strip()[:80]),
                                   kind="error")
                return Reply((unknown, *self._help(speaker, now).messages), ctx.lang)
            # no dialog open: the most useful thing to do next, when there is one
            advice = method.next_action(session, speaker, ctx, self.r)
            if advice is not None:
                return Reply((advice,), ctx.lang)
            return Reply((Outbound(self.r.text(ctx.lang, "idle")),), ctx.lang)
        return self._advance(session, speaker, current, text, now)

    def _check_press(self, session: Session, speaker: conv.Speaker,
                     current: conv.OpenDialog | None, inbound: Inbound, now: datetime) -> None:
        """A press counts only for the question it was shown with, of the presser's own open
        dialog, and only with one of that question's answers; else `PressRefused`."""
        state = DialogState.from_json(current.state) if current is not None else None
        if state is None or question_key(speaker.user_id, state) != inbound.key:
            self._refuse(session, speaker, now, "closed")
        assert state is not None
        if state.held is not None:
            allowed = {"1", "2"}
            multi = False
        else:
            ctx = self._ctx(session, speaker, now)
            asked = [m for m in self._ask(session, speaker, state, now, ctx)
                     if m.key == inbound.key]
            allowed = {o.value for m in asked for o in (*m.options, *m.controls)}
            multi = any(m.multi for m in asked)
        value = inbound.text.strip()
        if value in allowed or (multi and value and all(
                part.strip() in allowed for part in value.split(", "))):
            return
        self._refuse(session, speaker, now, "invalid")

    def _refuse(self, session: Session, speaker: conv.Speaker, now: datetime,
                why: str) -> None:
        ctx = self._ctx(session, speaker, now)
        raise PressRefused(Reply((Outbound(self.r.text(ctx.lang, f"press.{why}"),
                                           kind="error"),), ctx.lang, refused=why))

    def _unpause(self, session: Session, current: conv.OpenDialog,
                 now: datetime) -> conv.OpenDialog:
        state = replace(DialogState.from_json(current.state), paused=False)
        conv.save_dialog(session, current, state=state.to_json(), status=state.status, now=now)
        return replace(current, state=state.to_json(), version=current.version + 1)

    def _paused(self, session: Session, speaker: conv.Speaker, current: conv.OpenDialog,
                now: datetime) -> Reply:
        """A line that is no command while the dialog waits for `resume`: nothing is saved."""
        ctx = self._ctx(session, speaker, now)
        state = DialogState.from_json(current.state)
        text = self.r.text(ctx.lang, "paused.not_saved", title=self.engine.title(state, ctx.lang),
                           progress=self.engine.progress(state, ctx))
        return Reply((Outbound(text, kind="error"),), ctx.lang)

    def _names_record(self, session: Session, speaker: conv.Speaker, command: str,
                      arg: str) -> bool:
        """`arg` names a record the speaker may see that `command` takes (`opp daqing`)."""
        who = permissions.viewer(session, speaker.org_id, speaker.user_id, speaker.role)
        found = []
        if command != "opp":
            found += search.search_accounts(session, who, arg, limit=1)
        if command != "account":
            found += search.search_opportunities(session, who, arg, limit=1)
        return any(m.exact or m.score >= 0.7 for m in found)

    def _hold(self, session: Session, speaker: conv.Speaker, current: conv.OpenDialog,
              text: str, now: datetime) -> Reply:
        """Ask whether a line like `opp daqing` is the answer or the command; save nothing."""
        ctx = self._ctx(session, speaker, now)
        state = replace(DialogState.from_json(current.state), held=text.strip())
        conv.save_dialog(session, current, state=state.to_json(), status=state.status, now=now)
        typed = text.strip()[:80]
        ask = self.r.text(ctx.lang, "held.ask", typed=typed)
        options = (Option("1", self.r.text(ctx.lang, "held.answer", typed=typed)),
                   Option("2", self.r.text(ctx.lang, "held.run", typed=typed)))
        return Reply(tuple(keyed([Outbound(ask, kind="confirm", options=options)],
                                 speaker.user_id, state)), ctx.lang)

    def _release(self, session: Session, current: conv.OpenDialog,
                 now: datetime) -> conv.OpenDialog:
        state = replace(DialogState.from_json(current.state), held=None)
        conv.save_dialog(session, current, state=state.to_json(), status=state.status, now=now)
        return replace(current, state=state.to_json(), version=current.version + 1)

    def _held_choice(self, text: str) -> str | None:
        word = text.strip().casefold()
        for choice, number in (("answer", "1"), ("run", "2")):
            words = {w.strip().casefold() for catalog in self.r.catalogs.values()
                     for w in catalog.get(f"held.{choice}.words", "").split("|") if w.strip()}
            if word == number or word in words:
                return choice
        return None

    def _whole_command(self, command: str, arg: str) -> bool:
        """Inside a dialog a bare word is a command only when the whole line is one, so an
        answer like "Lang Ping" or "Help desk services" stays an answer."""
        if command == "lang":
            return self.r.language_named(arg) is not None
        if command == "resume":
            return not arg or arg.isdigit()
        return not arg

    def _answers(self, current: conv.OpenDialog, text: str) -> bool:
        """A command word that is also an option of the question asked is an answer."""
        return self.engine.is_option(DialogState.from_json(current.state), text)

    def _control(self, word: str) -> bool:
        return word.lstrip("/").casefold() in self.engine.aliases

    def _candidates(self, session: Session, speaker: conv.Speaker, state: DialogState,
                    text: str) -> tuple[tuple[str, str], ...]:
        """The names the current question may refer to (for "did you mean"): all of them,
        or, in an org with more than `reference_cap` customers or opportunities, those named
        like `text` (found by store/search, indexes and all)."""
        need = self.engine.reference_need(state)
        if need is None:
            return ()
        kind, scope = need
        org_id = speaker.org_id
        cap = self.reference_cap
        # a dialog records: it may name only what the speaker may change (store/permissions)
        who = permissions.viewer(session, org_id, speaker.user_id, speaker.role)
        owners = who.owners(Access.CHANGE)
        if kind == "account":
            names = records.names(session, "accounts", org_id=org_id, owners=owners,
                                  limit=cap + 1)
            if len(names) > cap:
                return tuple(search.named_like(session, who, "account", text,
                                               access=Access.CHANGE))
            return tuple(names)
        if kind == "opportunity":
            pairs = funnel.opportunity_candidates(session, org_id, scope, owners=owners,
                                                  limit=None if scope else cap + 1)
            if scope is None and len({oid for oid, _name in pairs}) > cap:
                return tuple(funnel.with_aliases(search.named_like(
                    session, who, "opportunity", text, access=Access.CHANGE)))
            return tuple(pairs)
        if kind == "invoice":
            return tuple(funnel.invoice_candidates(session, org_id, scope, owners=owners))
        if scope is None and "opportunity" in state.bound:  # a contact of the opportunity's
            scope = funnel.contact_account(session, state.bound["opportunity"]["id"])
        if scope is None:
            return ()
        return tuple(funnel.with_aliases(
            records.names(session, "contacts", org_id=org_id, account_id=scope, owners=owners)))

    def _facts(self, session: Session, speaker: conv.Speaker, state: DialogState,
               now: datetime, ctx: FlowContext) -> dict[str, object]:
        """What the flow's texts and checks may use (`uses:` in the flow file)."""
        if not self.engine.flows[state.flow].spec.uses:
            return {}
        return funnel.facts(session, speaker.org_id, state.bound, ctx.today)

    def _run(self, session: Session, speaker: conv.Speaker, state: DialogState, text: str,
             now: datetime) -> tuple[Turn, FlowContext]:
        """Advance the engine by one input, with the candidates and facts it needs."""
        ctx = self._ctx(session, speaker, now,
                       candidates=self._candidates(session, speaker, state, text))
        uses = bool(self.engine.flows[state.flow].spec.uses)
        if uses:
            ctx = replace(ctx, facts=self._facts(session, speaker, state, now, ctx))
        unique = self.engine.unique_need(state)
        if unique is not None and records.value_taken(session, *unique, org_id=speaker.org_id,
                                                      value=text.strip()):
            ctx = replace(ctx, taken=frozenset({text.strip()}))
        turn = self.engine.advance(state, text, ctx)
        if uses and turn.state.bound != state.bound:
            # the answer named the subject: run the turn again knowing about it (the next
            # question, its conditions and texts depend on what is recorded there)
            ctx = replace(ctx, facts=self._facts(session, speaker, turn.state, now, ctx))
            turn = self.engine.advance(state, text, ctx)
        return turn, ctx

    def _advance(self, session: Session, speaker: conv.Speaker, current: conv.OpenDialog,
                 text: str, now: datetime) -> Reply:
        state = DialogState.from_json(current.state)
        turn, ctx = self._run(session, speaker, state, text, now)
        self._apply(session, speaker, turn, now)
        conv.save_dialog(session, current, state=turn.state.to_json(), status=turn.state.status,
                         now=now)
        messages = keyed(turn.messages, speaker.user_id, turn.state)
        if turn.state.status == "done":
            if self.metrics is not None:
                self.metrics.dialogs_completed_total.labels(turn.state.flow).inc()
            messages.extend(self._report(session, speaker, turn.state, ctx))
        if turn.next_flow is not None:
            flow_id, bound = turn.next_flow
            messages.extend(self._open(session, speaker, flow_id, ctx, now, bound))
        return Reply(tuple(messages), ctx.lang)

    def _report(self, session: Session, speaker: conv.Speaker, state: DialogState,
                ctx: FlowContext) -> list[Outbound]:
        """A finished flow's report (the SPIN mix, what the step still misses ...), built
        from the database after this turn's writes."""
        name = self.engine.flows[state.flow].spec.report
        if not name:
            return []
        session.flush()
        return list(method.REPORTS[name](method.ReportRequest(
            session=session, speaker=speaker, state=state, ctx=ctx, renderer=self.r)))

    def _apply(self, session: Session, speaker: conv.Speaker, turn: Turn, now: datetime) -> None:
        for effect in turn.effects:
            if isinstance(effect, Save):
                values = effect.values
                if effect.defaults and not funnel.row_exists(session, effect.table, effect.id):
                    values = {**effect.defaults, **values}
                records.upsert(session, effect.table, effect.id, values,
                               org_id=speaker.org_id, user_id=speaker.user_id, now=now,
                               parent=effect.parent)
            elif isinstance(effect, Remove):
                records.remove(session, effect.table, effect.id, org_id=speaker.org_id)
            elif isinstance(effect, Log):
                records.log_activity(session, org_id=speaker.org_id, user_id=speaker.user_id,
                                     kind=effect.kind, note=effect.note, now=now,
                                     account_id=effect.account_id,
                                     opportunity_id=effect.opportunity_id,
                                     contact_id=effect.contact_id)

    def _open(self, session: Session, speaker: conv.Speaker, flow_id: str, ctx: FlowContext,
              now: datetime, bound: dict[str, dict[str, str]] | None = None,
              arg: str = "") -> list[Outbound]:
        """Start a flow; an argument (`spin Daqing`) answers its first question when that
        names a customer, an opportunity or a contact."""
        dialog_id = uuid.uuid4()
        if bound and self.engine.flows[flow_id].spec.uses:
            probe = DialogState(flow=flow_id, session_id=str(dialog_id), bound=bound)
            ctx = self._ctx(session, speaker, now, ctx.lang,
                            facts=self._facts(session, speaker, probe, now, ctx))
        turn = self.engine.start(flow_id, session_id=str(dialog_id), ctx=ctx, bound=bound)
        if self.metrics is not None:
            self.metrics.dialogs_started_total.labels(flow_id).inc()
        messages = list(turn.messages)
        if arg and self.engine.reference_need(turn.state) is not None:
            self._apply(session, speaker, turn, now)
            intro = [m for m in turn.messages if m.kind != "question"]
            turn, ctx = self._run(session, speaker, turn.state, arg, now)
            messages = [*intro, *turn.messages]
        self._apply(session, speaker, turn, now)
        conv.create_dialog(session, dialog_id=dialog_id, org_id=speaker.org_id,
                           user_id=speaker.user_id, flow=flow_id, state=turn.state.to_json(),
                           status=turn.state.status, now=now)
        if turn.state.status == "done":
            messages.extend(self._report(session, speaker, turn.state, ctx))
        return keyed(messages, speaker.user_id, turn.state)

    def _start(self, session: Session, speaker: conv.Speaker, flow_id: str,
               now: datetime, arg: str = "") -> Reply:
        ctx = self._ctx(session, speaker, now)
        return Reply(tuple(self._open(session, speaker, flow_id, ctx, now, arg=arg)), ctx.lang)

    def _command(self, session: Session, speaker: conv.Speaker, inbound: Inbound, name: str,
                 arg: str, now: datetime) -> Reply:
        ctx = self._ctx(session, speaker, now)
        request = CommandRequest(session=session, speaker=speaker, inbound=inbound, arg=arg,
                                 ctx=ctx, now=now, renderer=self.r, admins=self.admins)
        command = self.registry.commands[name]
        messages = tuple(command.handler(request))
        if inbound.chat == "channel" and not (inbound.shared or inbound.pressed
                                              or command.in_place):
            # typed in a channel or group: the answer is the asker's alone (Slack shows it
            # ephemeral, Telegram sends it to their private chat), unless they `share` it; a
            # tap on a post there (a nudge's buttons) answers on the post, which the command
            # marks private where it must
            messages = tuple(replace(m, private=True) for m in messages)
        return Reply(messages, ctx.lang)

    def _help(self, speaker: conv.Speaker, now: datetime) -> Reply:
        ctx = self._ctx(None, speaker, now)
        commands = [(name, self.r.text(ctx.lang, f"help.cmd.{name}"))
                    for name in self.help_names]
        text = self.r.template("help.j2", ctx.lang, commands=commands)
        return Reply((Outbound(text, kind="help"),), ctx.lang)

    def _lang(self, session: Session, speaker: conv.Speaker, arg: str,
              current: conv.OpenDialog | None, now: datetime) -> Reply:
        lang = self.r.language_named(arg)
        if lang is None:
            ctx = self._ctx(session, speaker, now)
            bad = self.r.text(ctx.lang, "lang.bad", langs=", ".join(self.r.languages))
            return Reply((Outbound(bad, kind="error"),), ctx.lang)
        conv.set_language(session, speaker.user_id, lang, now)
        ctx = self._ctx(session, speaker, now, lang=lang)
        out = [Outbound(self.r.text(lang, "lang.set"))]
        if current is not None:
            # the question again, in the new language, with the facts its text names
            out.extend(self._ask(session, speaker, DialogState.from_json(current.state), now,
                                 ctx))
        return Reply(tuple(out), lang)

    def _ask(self, session: Session, speaker: conv.Speaker, state: DialogState, now: datetime,
             ctx: FlowContext) -> list[Outbound]:
        """The open question again, with the facts its text names (what is still owed ...)."""
        if self.engine.flows[state.flow].spec.uses:
            ctx = replace(ctx, facts=self._facts(session, speaker, state, now, ctx))
        return keyed(self.engine.ask(state, ctx), speaker.user_id, state)

    def _resume(self, session: Session, speaker: conv.Speaker, arg: str,
                now: datetime) -> Reply:
        ctx = self._ctx(session, speaker, now)
        dialogs = conv.open_dialogs(session, speaker.user_id)
        if not dialogs:
            return Reply((Outbound(self.r.text(ctx.lang, "resume.none")),), ctx.lang)
        chosen = dialogs[0]
        if arg:
            if not arg.isdigit() or not 1 <= int(arg) <= len(dialogs):
                text = self.r.text(ctx.lang, "resume.bad", number=arg[:20])
                return Reply((Outbound(text, kind="error"), *self._listing(dialogs, ctx)),
                             ctx.lang)
            chosen = dialogs[int(arg) - 1]
            conv.touch_dialog(session, chosen.id, now)
        state = DialogState.from_json(chosen.state)
        if state.paused:
            chosen = self._unpause(session, chosen, now)
            state = DialogState.from_json(chosen.state)
        out = [*self._ask(session, speaker, state, now, ctx)]
        if len(dialogs) > 1 and not arg:
            out.extend(self._listing(dialogs, ctx))
        return Reply(tuple(out), ctx.lang)

    def _listing(self, dialogs: list[conv.OpenDialog], ctx: FlowContext) -> list[Outbound]:
        items = []
        for dialog in dialogs:
            state = DialogState.from_json(dialog.state)
            subject = next((b.get("name") for b in state.bound.values() if b.get("name")), None)
            if subject is None:
                subject = state.answers.get("name") if isinstance(state.answers.get("name"),
                                                                  str) else None
            items.append({"title": self.engine.title(state, ctx.lang), "subject": subject,
                          "progress": self.engine.progress(state, ctx)})
        return [Outbound(self.r.template("resume_list.j2", ctx.lang, items=items))]


def plain(markup: str | Markup) -> str:
    """Neutral markup as plain text (for logs and the piped console)."""
    import html
    import re

    return html.unescape(re.sub(r"</?(b|i|code)>", "", str(markup)))
