"""The conversation engine: (state, input, context) -> (new state, messages, effects). No I/O.

A flow expands, for the answers given so far, into a list of slots: its steps in order, each
group repeated per iteration with its "add another?" question, and conditional steps only when
their condition holds. The cursor is the slot being asked; after an answer the next slot is the
first unanswered one, so `back` and `edit` change one answer and return to where the rep was.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Protocol

from jinja2 import meta, nodes
from markupsafe import Markup, escape

from dialogs import parsing
from dialogs.errors import FlowError
from dialogs.flow import (
    OPTION_TYPES,
    REFERENCE_TYPES,
    Condition,
    Flow,
    FlowSet,
    GroupDef,
    OptionDef,
    StepDef,
    check_key,
    date_bounds,
)
from dialogs.messages import Option, Outbound, TurnContext
from dialogs.render import Renderer
from dialogs.state import DialogState

CONTROL_WORDS = ("back", "skip", "edit", "tip", "cancel")
MAX_INPUT = 10_000
FRAME_CACHE_SIZE = 8192  # rendered question frames, slots by key kept (Engine._frame, _slot)
# currencies a money answer may name (the parser reads these; anything else is "unknown")
KNOWN_CURRENCIES = frozenset({"CNY", "USD", "EUR", "GBP", "HKD", "JPY", "RUB"})
_CODE_LIKE = re.compile(r"(?<![A-Za-z])([A-Za-z]{3})(?![A-Za-z])")


@dataclass(frozen=True)
class FlowContext(TurnContext):
    """A turn context with the facts the host looked up for the flow's subjects (the bound
    opportunity, its contacts, an invoice ...): `f` in flow texts, `fact:` in conditions,
    `max_fact` in checks, `{...}` in record fills. Plain JSON-like data, read only."""

    facts: Mapping[str, Any] = field(default_factory=dict)
    # answers to a `unique` step that the store already holds
    taken: frozenset[str] = frozenset()


# the "which one?" questions that offer the asker's likely rows to tap (a contact question
# that may also name someone new is typed)
SUGGESTED_TYPES = frozenset({"account", "contact", "opportunity", "invoice"})
_SCOPE_OF = {"contact": "account", "opportunity": "account", "invoice": "opportunity"}


def _offers(step: StepDef) -> bool:
    return step.type in SUGGESTED_TYPES and not (step.type == "contact" and step.allow_new)


def _suggestions(ctx: TurnContext, kind: str, state: DialogState) -> Sequence[tuple[str, str]]:
    """What `ctx.suggest` offers for a reference question of `kind` in `state`: limited to the
    bound account or opportunity; contacts, when only an opportunity is bound, to its
    customer's (the host looks that up)."""
    assert ctx.suggest is not None
    scope = _reference_scope(kind, state)
    via = state.bound.get("opportunity") if kind == "contact" and scope is None else None
    return ctx.suggest(kind, scope, via["id"] if via else None)


def _reference_scope(kind: str, state: DialogState) -> str | None:
    """The id of the row a reference question is limited to (a contact or an opportunity of
    the bound account, an invoice of the bound opportunity), when the dialog has bound one."""
    scope = _SCOPE_OF.get(kind)
    bound = state.bound.get(scope) if scope else None
    return bound["id"] if bound else None


def facts_of(ctx: TurnContext) -> Mapping[str, Any]:
    return ctx.facts if isinstance(ctx, FlowContext) else {}


def fact(facts: Mapping[str, Any], path: str) -> Any:
    """`opportunity.account_id` in nested mappings; None when any part is missing."""
    node: Any = facts
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


@dataclass(frozen=True)
class Save:
    """Upsert one row: update `values` on `id`, or insert it (with `parent`) if it is new."""

    table: str
    id: str
    values: dict[str, Any]
    parent: tuple[str, str] | None = None
    # values for required columns not answered yet, used only when the row is inserted
    defaults: dict[str, Any] | None = None


@dataclass(frozen=True)
class Remove:
    """Delete a row this dialog created and the rep then took back."""

    table: str
    id: str


@dataclass(frozen=True)
class Log:
    """An activity for the log."""

    kind: str
    note: str
    account_id: str | None = None
    opportunity_id: str | None = None
    contact_id: str | None = None


Effect = Save | Remove | Log


@dataclass(frozen=True)
class Turn:
    state: DialogState
    messages: tuple[Outbound, ...]
    effects: tuple[Effect, ...] = ()
    next_flow: tuple[str, dict[str, dict[str, str]]] | None = None


@dataclass(frozen=True)
class Slot:
    key: str
    kind: str  # "step" | "start" | "more"
    step: StepDef | None = None
    group: GroupDef | None = None
    index: int | None = None


class ColumnLimit(Protocol):
    """What the column an answer is saved into can hold (`store.limits.Limit`)."""

    @property
    def max_length(self) -> int | None: ...

    def clean(self, text: str) -> str: ...

    def check(self, value: Any) -> Any: ...  # None, or a refusal with `code` and `params`


class Engine:
    """Runs flows. Holds only immutable things loaded at start-up.

    `limits(table, column)` says what a column can hold (the store's `limit_for`): an answer
    that does not fit the column its step saves into is refused with a re-ask."""

    def __init__(self, flows: FlowSet, renderer: Renderer,
                 limits: Callable[[str, str], ColumnLimit | None] | None = None) -> None:
        self.flows = flows
        self.r = renderer
        # (flow, step) -> the limit of the column the step saves into
        self.limits: dict[tuple[str, str], ColumnLimit] = {}
        for flow in flows.flows.values():
            for step in flow.all_steps():
                parts = (step.save or "").split(".")
                if limits is None or len(parts) < 2 or parts[0] not in flow.spec.records:
                    continue
                found = limits(flow.spec.records[parts[0]].table, parts[1])
                if found is not None:
                    self.limits[(flow.id, step.id)] = found
        self.aliases: dict[str, str] = {}
        for catalog in renderer.catalogs.values():
            for word in CONTROL_WORDS:
                for alias in catalog.get(f"command.{word}", word).split("|"):
                    self.aliases[alias.strip().casefold()] = word
        for flow in flows.flows.values():
            self._check_texts(flow)
        self._slots: dict[tuple[str, str], Slot] = {}
        # question.j2 rendered, by everything it depends on: most turns ask a question some
        # other rep was asked before, and the template run is a good part of a turn's CPU
        self._slot_of: dict[tuple[str, str], Slot | None] = {}
        self._names_of: dict[str, tuple[str, ...] | None] = {}
        self._asked: dict[tuple[str, int, tuple[Any, ...]], Markup] = {}
        self._framed: dict[tuple[str, tuple[int, int], Markup, Markup | None, Markup | None],
                           Markup] = {}
        self._iterations_cache: dict[tuple[str, str, int], list[tuple[StepDef | None, Slot]]] = {}
        self.control_labels = {
            lang: {w: str(renderer.text(lang, f"control.{w}")) for w in CONTROL_WORDS
                   if w != "edit"}
            for lang in renderer.languages
        }
        # steps whose answers decide whether other steps are asked
        self.deciding: dict[str, set[str]] = {}
        for flow in flows.flows.values():
            refs: set[str] = set()
            for item in flow.spec.steps:
                conds = [item.when] + ([s.when for s in item.steps]
                                       if isinstance(item, GroupDef) else [])
                for cond in conds:
                    if cond is not None:
                        refs.update(cond.steps())
            self.deciding[flow.id] = refs
        # per group, the records its steps save: one row of each per iteration
        self.group_records: dict[tuple[str, str], tuple[str, ...]] = {}
        for flow in flows.flows.values():
            for item in flow.spec.steps:
                if isinstance(item, GroupDef):
                    aliases = [item.record]
                    for sub in item.steps:
                        if not sub.save or sub.bind:
                            continue
                        alias = sub.save.split(".")[0]
                        if alias not in aliases and \
                                flow.spec.records[alias].table != "opportunities":
                            aliases.append(alias)
                    self.group_records[(flow.id, item.group)] = tuple(aliases)
        # records whose parent is written in the same group iteration (a need under a need)
        self.iteration_parent: set[tuple[str, str]] = {
            (fid, alias) for (fid, _group), aliases in self.group_records.items()
            for alias in aliases
            if self.flows[fid].spec.records[alias].parent in aliases}

    def _check_texts(self, flow: Flow) -> None:
        def texts(step: StepDef) -> Iterable[str]:
            for group in (step.ask, step.tip or {}, step.label or {}):
                yield from group.values()
            for reaction in (step.react or {}).values():
                yield from reaction.values()

        allowed = {"a", "n"} | ({"f", "t", "v"} if flow.spec.uses else set())
        for item in flow.spec.steps:
            steps = [item] if isinstance(item, StepDef) else item.steps
            for step in steps:
                for source in texts(step):
                    self.r.check(source)
                    if "{" not in source:
                        continue
                    unknown = meta.find_undeclared_variables(self.r.env.parse(source)) - allowed
                    if unknown:
                        hint = " (declare `uses:` to use facts)" if unknown & {"f", "t", "v"} \
                            else ""
                        raise FlowError(f"{flow.source}: step '{step.id}': a text uses "
                                        f"{', '.join(sorted(unknown))}, which it cannot{hint}")

    # ---- public API -------------------------------------------------------------------------

    def start(
        self,
        flow_id: str,
        *,
        session_id: str,
        ctx: TurnContext,
        bound: dict[str, dict[str, str]] | None = None,
    ) -> Turn:
        """Open a dialog: the intro and the first question."""
        flow = self.flows[flow_id]
        answers: dict[str, Any] = {}
        for item in flow.spec.steps:
            if isinstance(item, StepDef) and item.bind and bound and item.bind in bound:
                answers[item.id] = dict(bound[item.bind])
        state = DialogState(flow=flow_id, session_id=session_id, answers=answers,
                            bound=dict(bound or {}))
        intro = Outbound(self.r.pick(flow.spec.intro, ctx.lang, **self._extras(flow, ctx)),
                         kind="intro")
        return self._proceed(flow, state, ctx, (intro,), ())

    def _waiting(self, state: DialogState) -> tuple[Flow, StepDef] | None:
        """The flow and the step of the question waiting for an answer, if one is."""
        if state.pending or state.cursor is None:
            return None
        flow = self.flows[state.flow]
        slot = self._slot(flow, state, state.cursor)
        if slot is None or slot.step is None:
            return None
        return flow, slot.step

    def unique_need(self, state: DialogState) -> tuple[str, str] | None:
        """If the current question is a `unique` one, the (table, column) its answer must not
        already be in: the host says whether the typed value is (`FlowContext.taken`)."""
        waiting = self._waiting(state)
        if waiting is None:
            return None
        flow, step = waiting
        if not step.unique or step.save is None:
            return None
        alias, column = step.save.split(".")[:2]
        return flow.spec.records[alias].table, column

    def reference_need(self, state: DialogState) -> tuple[str, str | None] | None:
        """If the current question names an existing row, what the host looks up first:
        (`account`, None), (`contact`, account id), (`opportunity`, account id) or
        (`invoice`, opportunity id) — the id when the dialog has bound one, else None."""
        waiting = self._waiting(state)
        if waiting is None or waiting[1].type not in REFERENCE_TYPES:
            return None
        kind = waiting[1].type
        return (kind, _reference_scope(kind, state))

    def is_option(self, state: DialogState, text: str) -> bool:
        """Whether `text` names one of the options of the question waiting (so a word like
        "trust" or "contract" answers it rather than opening another dialog)."""
        waiting = self._waiting(state)
        if waiting is None or waiting[1].type not in OPTION_TYPES:
            return False
        flow, step = waiting
        key = text.strip().casefold()
        return any(key in (o.value.casefold(), o.en.casefold(), o.zh.casefold())
                   for o in flow.options_for(step))

    def ask(self, state: DialogState, ctx: TurnContext) -> tuple[Outbound, ...]:
        """The question the dialog waits on, again (after `resume`, `lang`, a restart)."""
        flow = self.flows[state.flow]
        if state.pending:
            return self._ask_pending(flow, state, ctx)
        if state.cursor is None:
            return ()
        slot = self._slot(flow, state, state.cursor)
        if slot is None:
            return ()
        return (self._question(flow, state, slot, ctx),)

    def title(self, state: DialogState, lang: str) -> Markup:
        return self.r.pick(self.flows[state.flow].spec.title, lang)

    def progress(self, state: DialogState, ctx: TurnContext) -> tuple[int, int]:
        flow = self.flows[state.flow]
        slots = self._expand(flow, state, ctx)
        keys = [s.key for s in slots]
        pos = keys.index(state.cursor) + 1 if state.cursor in keys else len(keys)
        return pos, len(keys)

    def advance(self, state: DialogState, text: str, ctx: TurnContext) -> Turn:
        """Apply one input to a dialog."""
        flow = self.flows[state.flow]
        if state.status != "active":
            return Turn(state, (Outbound(self.r.text(ctx.lang, "dialog.closed"), kind="error"),))
        raw = text.strip()
        word = self.aliases.get(raw.casefold().lstrip("/"))
        if len(text) > MAX_INPUT:
            return self._reask(flow, state, ctx, "err.too_long", length=len(text), limit=MAX_INPUT)
        if word == "cancel":
            closed = replace(state, status="cancelled", pending=None)
            return Turn(closed, (Outbound(self.r.text(
                ctx.lang, "dialog.cancelled", title=self.r.pick(flow.spec.title, ctx.lang)),
                kind="say"),))
        if state.pending:
            return self._answer_pending(flow, state, raw, word, ctx)
        if state.cursor is None:
            return Turn(state, ())
        slot = self._slot(flow, state, state.cursor)
        if slot is None:  # the flow file changed under a stored dialog: go on from the start
            return self._proceed(flow, replace(state, cursor=None), ctx, (), ())
        if word == "tip":
            return Turn(state, (self._tip(flow, slot, ctx),))
        if word == "back":
            return self._back(flow, state, slot, ctx)
        if word == "edit":
            return self._edit_list(flow, state, ctx)
        if word == "skip":
            if slot.kind == "step" and slot.step is not None and slot.step.optional:
                return self._accept(flow, state, slot, None, ctx)
            return self._reask(flow, state, ctx, "err.cannot_skip")
        if not raw:
            return self._reask(flow, state, ctx, "err.empty")
        return self._answer(flow, state, slot, raw, ctx)

    # ---- expansion ----------------------------------------------------------------------------

    def _expand(self, flow: Flow, state: DialogState, ctx: TurnContext) -> list[Slot]:
        slots: list[Slot] = []
        answers = state.answers
        for item in flow.spec.steps:
            if isinstance(item, StepDef):
                if item.when is None or self._holds(item.when, answers, "", ctx):
                    slots.append(self._static_slot(flow, item))
                continue
            group = item
            if group.when is not None and not self._holds(group.when, answers, "", ctx):
                continue
            if group.min == 0:
                start = self._iteration(flow, group, -1)
                slots.append(start[0][1])
                if answers.get(start[0][1].key) is not True:
                    continue
            index = 0
            while True:
                iteration = self._iteration(flow, group, index)
                prefix = f"{group.group}.{index}."
                for step, slot in iteration[:-1]:
                    if step is None or step.when is None or \
                            self._holds(step.when, answers, prefix, ctx):
                        slots.append(slot)
                if index + 1 >= group.max:
                    break
                more = iteration[-1][1]
                slots.append(more)
                if answers.get(more.key) is not True:
                    break
                index += 1
        return slots

    def _static_slot(self, flow: Flow, step: StepDef) -> Slot:
        key = (flow.id, step.id)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = Slot(step.id, "step", step=step)
        return slot

    def _iteration(self, flow: Flow, group: GroupDef,
                   index: int) -> list[tuple[StepDef | None, Slot]]:
        """A group iteration's slots, then its "add another?" slot (built once; the engine
        runs every turn, and building them was a fifth of its time). Index -1: the start."""
        key = (flow.id, group.group, index)
        cached = self._iterations_cache.get(key)
        if cached is not None:
            return cached
        if index < 0:
            built: list[tuple[StepDef | None, Slot]] = [
                (None, Slot(f"{group.group}.start", "start", group=group))]
        else:
            prefix = f"{group.group}.{index}."
            built = [(step, Slot(prefix + step.id, "step", step=step, group=group, index=index))
                     for step in group.steps]
            built.append((None, Slot(f"{group.group}.more.{index}", "more", group=group,
                                     index=index)))
        self._iterations_cache[key] = built
        return built

    def _slot(self, flow: Flow, state: DialogState, key: str) -> Slot | None:
        """The slot a key names (`name`, `contacts.start`, `contacts.more.0`, `contacts.1.x`);
        it depends on the flow only, so it is worked out once per key."""
        memo = (flow.id, key)
        if memo in self._slot_of:
            return self._slot_of[memo]
        if len(self._slot_of) >= FRAME_CACHE_SIZE:
            self._slot_of.clear()
        slot = self._slot_of[memo] = self._find_slot(flow, key)
        return slot

    def _find_slot(self, flow: Flow, key: str) -> Slot | None:
        head, _, rest = key.partition(".")
        if not rest:
            for item in flow.spec.steps:
                if isinstance(item, StepDef) and item.id == key:
                    return Slot(key, "step", step=item)
            return None
        try:
            group = flow.group(head)
        except KeyError:
            return None
        if rest == "start":
            return Slot(key, "start", group=group) if group.min == 0 else None
        part, _, tail = rest.partition(".")
        if part == "more" and tail.isdigit():
            return Slot(key, "more", group=group, index=int(tail))
        if part.isdigit():
            for step in group.steps:
                if step.id == tail:
                    return Slot(key, "step", step=step, group=group, index=int(part))
        return None

    def _expand_all(self, flow: Flow, state: DialogState) -> list[Slot]:
        """Every slot the answers could reach, conditions ignored (to find a slot by key)."""
        slots: list[Slot] = []
        for item in flow.spec.steps:
            if isinstance(item, StepDef):
                slots.append(Slot(item.id, "step", step=item))
                continue
            if item.min == 0:
                slots.append(Slot(f"{item.group}.start", "start", group=item))
            count = self._iterations(item, state.answers)
            for index in range(max(count, 1)):
                for step in item.steps:
                    slots.append(Slot(f"{item.group}.{index}.{step.id}", "step", step=step,
                                      group=item, index=index))
                slots.append(Slot(f"{item.group}.more.{index}", "more", group=item, index=index))
        return slots

    @staticmethod
    def _iterations(group: GroupDef, answers: dict[str, Any]) -> int:
        if group.min == 0 and answers.get(f"{group.group}.start") is not True:
            return 0
        count = 1
        while answers.get(f"{group.group}.more.{count - 1}") is True and count < group.max:
            count += 1
        return count

    def _holds(self, cond: Condition, answers: dict[str, Any], prefix: str,
               ctx: TurnContext) -> bool:
        if cond.all is not None:
            return all(self._holds(c, answers, prefix, ctx) for c in cond.all)
        if cond.any is not None:
            return any(self._holds(c, answers, prefix, ctx) for c in cond.any)
        if cond.fact is not None:
            value = fact(facts_of(ctx), cond.fact)
            present = value not in (None, "", [])
        else:
            assert cond.step is not None
            key = prefix + cond.step if prefix and prefix + cond.step in answers else cond.step
            present = key in answers and answers[key] is not None
            value = answers.get(key)
        if cond.answered is not None:
            return present == cond.answered
        if not present:
            return cond.not_equals is not None
        if cond.equals is not None:
            return bool(value == cond.equals)
        if cond.not_equals is not None:
            return bool(value != cond.not_equals)
        if cond.in_ is not None:
            return value in cond.in_
        if cond.contains is not None:
            return isinstance(value, list) and cond.contains in value
        if cond.within_days is not None:
            try:
                days = (date.fromisoformat(str(value)) - ctx.today).days
            except ValueError:
                return False
            return 0 <= days <= cond.within_days
        number = _as_number(value)
        if number is None:
            return False
        if cond.min is not None and number < Decimal(str(cond.min)):
            return False
        return not (cond.max is not None and number > Decimal(str(cond.max)))

    # ---- moving -------------------------------------------------------------------------------

    def _proceed(self, flow: Flow, state: DialogState, ctx: TurnContext,
                 before: tuple[Outbound, ...], effects: tuple[Effect, ...]) -> Turn:
        """Move the cursor to the first unanswered slot and ask it, or finish the flow."""
        refusal = next((r for r in flow.spec.refuse if self._holds(r.when, {}, "", ctx)), None)
        if refusal is not None:  # the flow does not apply to this record: say so, save nothing
            closed = replace(state, status="cancelled", cursor=None, pending=None)
            return Turn(closed, (Outbound(self.r.pick(refusal.say, ctx.lang,
                                                      **self._extras(flow, ctx)), kind="error"),))
        slots = self._expand(flow, state, ctx)
        for slot in slots:
            if slot.key not in state.answers:
                moved = replace(state, cursor=slot.key, pending=None)
                return Turn(moved, (*before, self._question(flow, moved, slot, ctx, slots)),
                            effects)
        return self._finish(flow, replace(state, cursor=None, pending=None), ctx, before,
                            effects, slots)

    def _accept(self, flow: Flow, state: DialogState, slot: Slot, value: Any,
                ctx: TurnContext, bound: dict[str, str] | None = None) -> Turn:
        """Record an answer, emit what it saves, and move on."""
        answers = dict(state.answers)
        was_answered = slot.key in answers
        answers[slot.key] = value
        new_bound = dict(state.bound)
        if bound is not None and slot.step is not None and slot.step.bind:
            new_bound[slot.step.bind] = bound
        effects: list[Effect] = []
        if slot.kind in ("more", "start") and value is False:
            effects.extend(self._drop_iterations(flow, state, slot, answers))
        if slot.kind == "step" and slot.step is not None and slot.step.audit:
            _audit(slot, value, ctx, answers)
        new_state = replace(state, answers=answers, bound=new_bound)
        if slot.kind == "step" and slot.step is not None:
            effects.extend(self._saves(flow, new_state, slot, ctx))
        if slot.step is not None and slot.step.id in self.deciding[flow.id]:
            effects.extend(self._clear_hidden(flow, state, new_state, ctx))
        note: tuple[Outbound, ...] = ()
        if was_answered:
            note = (Outbound(self.r.text(ctx.lang, "dialog.updated"), kind="say"),)
        echo = self._echo(slot, value, ctx)
        if echo is not None:
            note = (*note, echo)
        if slot.step is not None and slot.step.react:
            note = (*note, *self._reactions(flow, new_state, slot, value, ctx))
        return self._proceed(flow, new_state, ctx, note, tuple(effects))

    def _echo(self, slot: Slot, value: Any, ctx: TurnContext) -> Outbound | None:
        """A date or an amount as understood (`Contract signed: 2026-11-28 (Sat, 6 days
        ago)`), so that a wrong parse is seen at once."""
        step = slot.step
        if step is None or value is None or slot.kind != "step":
            return None
        if step.type == "date":
            shown = self.shown_date(value, ctx)
        elif step.type == "money" and isinstance(value, dict):
            shown = format_money(value)
        else:
            return None
        return Outbound(self.r.text(ctx.lang, "dialog.echo",
                                    label=self.r.pick(step.label or step.ask, ctx.lang),
                                    value=shown), kind="echo")

    def _drop_iterations(self, flow: Flow, state: DialogState, slot: Slot,
                         answers: dict[str, Any]) -> list[Effect]:
        """A "no more" answer takes back the group's later iterations and their rows."""
        assert slot.group is not None
        group = slot.group
        keep = 0 if slot.kind == "start" else (slot.index or 0) + 1
        prefix = f"{group.group}."
        dropped: set[int] = set()
        for key in list(answers):
            if not key.startswith(prefix):
                continue
            head, _, _rest = key[len(prefix):].partition(".")
            if head == "more":
                if int(_rest) >= keep:
                    del answers[key]
            elif head.isdigit() and int(head) >= keep:
                dropped.add(int(head))
                del answers[key]
        aliases = self.group_records.get((flow.id, group.group), (group.record,))
        return [Remove(flow.spec.records[alias].table,
                       self._record_id(flow, state, alias, index))
                for index in sorted(dropped) for alias in reversed(aliases)]

    def _clear_hidden(self, flow: Flow, old: DialogState, new: DialogState,
                      ctx: TurnContext) -> list[Effect]:
        """Answers to steps that a changed answer has hidden are cleared where they were saved."""
        before = {s.key for s in self._expand(flow, old, ctx)}
        after = {s.key for s in self._expand(flow, new, ctx)}
        effects: list[Effect] = []
        for slot in self._expand_all(flow, new):
            if (slot.key in before and slot.key not in after and slot.step is not None
                    and slot.step.save and new.answers.get(slot.key) is not None):
                effects.extend(self._saves(flow, new, slot, ctx, clear=True))
        return effects

    def _back(self, flow: Flow, state: DialogState, slot: Slot, ctx: TurnContext) -> Turn:
        slots = self._expand(flow, state, ctx)
        keys = [s.key for s in slots]
        pos = keys.index(slot.key) if slot.key in keys else len(keys)
        for prev in reversed(slots[:pos]):
            answer = state.answers.get(prev.key)
            if isinstance(answer, dict) and answer.get("handed"):
                continue  # handed over by the flow before: not a question of this dialog
            moved = replace(state, cursor=prev.key)
            return Turn(moved, (self._question(flow, moved, prev, ctx, slots),))
        return self._reask(flow, state, ctx, "err.no_back")

    def _edit_list(self, flow: Flow, state: DialogState, ctx: TurnContext) -> Turn:
        slots = [s for s in self._expand(flow, state, ctx)
                 if s.kind == "step" and s.key in state.answers and s.key != state.cursor]
        if not slots:
            return self._reask(flow, state, ctx, "err.nothing_to_edit")
        pending = {"kind": "edit", "keys": [s.key for s in slots]}
        moved = replace(state, pending=pending)
        return Turn(moved, self._ask_pending(flow, moved, ctx))

    # ---- answering ----------------------------------------------------------------------------

    def _answer(self, flow: Flow, state: DialogState, slot: Slot, raw: str,
                ctx: TurnContext) -> Turn:
        if slot.kind in ("start", "more"):
            try:
                return self._accept(flow, state, slot, parsing.parse_yes_no(raw), ctx)
            except parsing.ParseError as exc:
                return self._reask(flow, state, ctx, f"parse.{exc.code}", **exc.params)
        step = slot.step
        assert step is not None
        if step.type in REFERENCE_TYPES:
            return self._reference(flow, state, slot, raw, ctx)
        try:
            value = self._parse(flow, step, raw, ctx)
        except parsing.ParseError as exc:
            if step.type == "money" and exc.code == "money":
                unknown = [c.upper() for c in _CODE_LIKE.findall(raw)
                           if c.upper() not in KNOWN_CURRENCIES]
                if unknown:
                    return self._reask(flow, state, ctx, "err.currency_unknown",
                                       code=unknown[0], known=", ".join(sorted(KNOWN_CURRENCIES)))
            return self._reask(flow, state, ctx, f"parse.{exc.code}", **exc.params)
        except _TooLong as exc:
            return self._reask(flow, state, ctx, "err.too_long", length=exc.length,
                               limit=exc.limit)
        except _Refused as exc:
            return self._reask(flow, state, ctx, f"err.{exc.code}", **exc.params)
        column = self.limits.get((flow.id, step.id))
        if column is not None and step.type != "text":  # a number the column cannot hold
            refused = column.check(_db_value(step, value))
            if refused is not None:
                return self._reask(flow, state, ctx, f"err.{refused.code}", **refused.params)
        if step.type == "date":
            problem = self._date_violation(flow, state, slot, value, ctx)
            if problem is not None:
                key, params = problem
                if key == "err.date_past_confirm":  # typed again, the past plan stands
                    if state.confirm == f"{slot.key}={value}":
                        return self._accept(flow, replace(state, confirm=None), slot, value, ctx)
                    state = replace(state, confirm=f"{slot.key}={value}")
                return self._reask(flow, state, ctx, key, **params)
        if step.type == "money" or step.unique:
            problem = self._violation(flow, state, slot, value, ctx)
            if problem is not None:
                return self._reask(flow, state, ctx, problem[0], **problem[1])
        return self._accept(flow, replace(state, confirm=None) if state.confirm else state,
                            slot, value, ctx)

    def shown_date(self, iso: str, ctx: TurnContext) -> str:
        """A date as the coach echoes it: `2026-11-28 (Sat, 6 days ago)`, so a wrong parse
        is seen at once."""
        day = date.fromisoformat(str(iso)[:10])
        days = (day - ctx.today).days
        if days == 0:
            when = self.r.text(ctx.lang, "rel.today")
        elif days == -1:
            when = self.r.text(ctx.lang, "rel.yesterday")
        elif days == 1:
            when = self.r.text(ctx.lang, "rel.tomorrow")
        elif days < 0:
            when = self.r.text(ctx.lang, "rel.ago", n=-days)
        else:
            when = self.r.text(ctx.lang, "rel.in", n=days)
        return str(self.r.text(ctx.lang, "rel.date", date=day.isoformat(),
                               weekday=self.r.text(ctx.lang, f"rel.wd.{day.weekday()}"),
                               when=when))

    def _date_bound(self, flow: Flow, state: DialogState, slot: Slot, name: str,
                    ctx: TurnContext) -> tuple[str | None, str]:
        """The date `name` stands for (ISO, or None when unknown) and how to call it."""
        if name == "now":
            return ctx.today.isoformat(), str(self.r.text(ctx.lang, "rel.today"))
        if "." in name:
            value = fact(facts_of(ctx), name)
            return (str(value)[:10] if value else None,
                    str(self.r.text(ctx.lang, f"fact.{name}")))
        prefix = f"{slot.group.group}.{slot.index}." if slot.group is not None else ""
        value = state.answers.get(prefix + name) or state.answers.get(name)
        other = flow.step(name)
        return (str(value) if value else None,
                str(self.r.pick(other.label or other.ask, ctx.lang)))

    def _date_violation(self, flow: Flow, state: DialogState, slot: Slot, value: Any,
                        ctx: TurnContext) -> tuple[str, dict[str, Any]] | None:
        """The flow's date rules (`not_before`, `not_after`): a fact after today, a plan in
        the past, a delivery before production, an invoice before the contract."""
        step = slot.step
        assert step is not None
        label = self.r.pick(step.label or step.ask, ctx.lang)
        shown = self.shown_date(value, ctx)
        for name in date_bounds(step.not_after):
            bound, what = self._date_bound(flow, state, slot, name, ctx)
            if bound is not None and str(value) > bound:
                if name == "now":
                    return "err.date_future", {"label": label, "date": shown}
                return "err.date_after", {"label": label, "date": shown, "other_label": what,
                                          "other": self.shown_date(bound, ctx)}
        for name in date_bounds(step.not_before):
            bound, what = self._date_bound(flow, state, slot, name, ctx)
            if bound is not None and str(value) < bound:
                if name == "now":
                    return "err.date_past_confirm", {"label": label, "date": shown,
                                                     "typed": value}
                return "err.date_before", {"date": shown, "other": self.shown_date(bound, ctx),
                                           "other_label": what}
        return None

    def _violation(self, flow: Flow, state: DialogState, slot: Slot, value: Any,
                   ctx: TurnContext) -> tuple[str, dict[str, Any]] | None:
        """The declared checks that need more than the answer itself: a due date before the
        issue date, a payment above what is owed or in another currency, a too small amount,
        an invoice number already used."""
        step = slot.step
        assert step is not None
        if step.unique and isinstance(ctx, FlowContext) and value in ctx.taken:
            return "err.taken", {"value": value,
                                 "label": self.r.pick(step.label or step.ask, ctx.lang)}
        if step.type == "money" and isinstance(value, dict):
            amount = Decimal(str(value["amount"]))
            if step.min_value is not None and amount < Decimal(str(step.min_value)):
                return "err.amount_min", {"minimum": step.min_value}
            facts = facts_of(ctx)
            if step.currency_fact:
                currency = fact(facts, step.currency_fact)
                if currency and value["currency"] != currency:
                    return "err.currency_mismatch", {"typed": value["currency"],
                                                     "currency": currency}
            if step.max_fact:
                limit = _as_number(fact(facts, step.max_fact))
                if limit is not None and amount > limit:
                    return "err.more_than_owed", {
                        "amount": format_money(value),
                        "owed": format_money({"amount": limit,
                                              "currency": value["currency"]})}
        return None

    def _parse(self, flow: Flow, step: StepDef, raw: str, ctx: TurnContext) -> Any:
        kind = step.type
        if kind == "text":
            column = self.limits.get((flow.id, step.id))
            limit = step.max_length
            if column is not None:  # one line where the column holds one (newlines folded)
                raw = column.clean(raw)
                if column.max_length is not None:  # the tighter of the step's and the column's
                    limit = min(limit, column.max_length)
            if len(raw) > limit:
                raise _TooLong(len(raw), limit)
            refused = column.check(raw) if column is not None else None
            if refused is not None:
                raise _Refused(refused.code, refused.params)
            return raw
        if kind == "yes_no":
            return parsing.parse_yes_no(raw)
        if kind in OPTION_TYPES:
            # the asker's language first: an error names the options as they were shown
            opts = [(o.value, (o.label(ctx.lang), o.en, o.zh, o.value))
                    for o in flow.options_for(step)]
            if kind == "choice":
                return parsing.parse_choice(raw, opts)
            return parsing.parse_multi_choice(raw, opts)
        if kind == "number":
            lo = Decimal(str(step.min_value)) if step.min_value is not None else None
            hi = Decimal(str(step.max_value)) if step.max_value is not None else None
            return str(parsing.parse_number(raw, minimum=lo, maximum=hi))
        if kind == "money":
            return parsing.parse_money(raw, default_currency=ctx.default_currency).to_json()
        if kind == "date":
            return parsing.parse_date(raw, today=ctx.today, lang=ctx.lang,
                                      prefer=step.prefer).isoformat()
        if kind == "rating":
            return parsing.parse_rating(raw, low=step.low, high=step.high)
        raise AssertionError(kind)

    def _reference(self, flow: Flow, state: DialogState, slot: Slot, raw: str,
                   ctx: TurnContext) -> Turn:
        step = slot.step
        assert step is not None
        if len(raw) > 200:
            return self._reask(flow, state, ctx, "err.too_long", length=len(raw), limit=200)
        raw = self._suggested(step, state, raw, ctx)
        # a row may come with several names (an opportunity: its own, its customer's); the
        # first is what it is called
        canonical: dict[str, str] = {}
        for cid, name in ctx.candidates:
            canonical.setdefault(cid, name)
        named: dict[str, list[str]] = {}
        for cid, name in ctx.candidates:
            named.setdefault(name, []).append(cid)
        key = parsing.normalize_key(raw)
        exact_ids = list(dict.fromkeys(cid for cid, name in ctx.candidates
                                       if parsing.normalize_key(name) == key))
        if len(exact_ids) == 1:
            cid = exact_ids[0]
            name = canonical[cid]
            return self._accept(flow, state, slot, {"id": cid, "name": name}, ctx,
                                bound={"id": cid, "name": name})
        ids = exact_ids
        if exact_ids:
            near = [canonical[cid] for cid in exact_ids]
        else:
            near_names = parsing.close_matches(raw, list(named))
            # names that contain what was typed beat names that merely look alike
            containing = [n for n in near_names if key and key in parsing.normalize_key(n)]
            ids = list(dict.fromkeys(cid for n in containing or near_names for cid in named[n]))
            near = [canonical[cid] for cid in ids]
        names = {canonical[cid]: cid for cid in ids}
        if len(near) == 1 and not step.allow_new:
            pending: dict[str, Any] = {"kind": "confirm", "id": names[near[0]],
                                       "name": near[0], "typed": raw}
            moved = replace(state, pending=pending)
            return Turn(moved, self._ask_pending(flow, moved, ctx))
        if near:
            pending = {"kind": "pick", "choices": [[names[n], n] for n in near], "typed": raw}
            moved = replace(state, pending=pending)
            return Turn(moved, self._ask_pending(flow, moved, ctx))
        if step.allow_new:
            return self._accept(flow, state, slot, {"id": None, "name": raw}, ctx)
        return self._reask(flow, state, ctx, f"ref.none_{step.type}", typed=raw)

    @staticmethod
    def _suggested(step: StepDef, state: DialogState, raw: str, ctx: TurnContext) -> str:
        """A number typed for a suggested row ("2" in the terminal) is that row's name, unless
        some row is called just that."""
        if ctx.suggest is None or not _offers(step) or not raw.isascii() or not raw.isdigit():
            return raw
        key = parsing.normalize_key(raw)
        if any(parsing.normalize_key(name) == key for _id, name in ctx.candidates):
            return raw
        shown = _suggestions(ctx, step.type, state)
        n = int(raw)
        return shown[n - 1][1] if 1 <= n <= len(shown) else raw

    def _answer_pending(self, flow: Flow, state: DialogState, raw: str, word: str | None,
                        ctx: TurnContext) -> Turn:
        pending = state.pending or {}
        cleared = replace(state, pending=None)
        if word in ("back", "skip") or (word == "edit" and pending.get("kind") == "edit"):
            return Turn(cleared, self.ask(cleared, ctx))
        if word == "tip" and state.cursor:
            slot = self._slot(flow, state, state.cursor)
            if slot is not None:
                return Turn(state, (self._tip(flow, slot, ctx),))
        slot = self._slot(flow, state, state.cursor) if state.cursor else None
        kind = pending.get("kind")
        if kind == "confirm" and slot is not None:
            try:
                yes = parsing.parse_yes_no(raw)
            except parsing.ParseError:
                # not a yes/no: take it as a fresh answer to the question itself
                return self._answer(flow, cleared, slot, raw, ctx)
            if yes:
                chosen = {"id": pending["id"], "name": pending["name"]}
                return self._accept(flow, cleared, slot, chosen, ctx, bound=dict(chosen))
            return Turn(cleared, (Outbound(self.r.text(ctx.lang, "ref.retype"), kind="say"),
                                  *self.ask(cleared, ctx)))
        if kind == "pick" and slot is not None:
            choices = [(cid, name) for cid, name in pending["choices"]]
            opts: list[tuple[str, tuple[str, ...]]] = [
                (str(i), (name,)) for i, (_cid, name) in enumerate(choices)]
            step = slot.step
            if step is not None and step.allow_new:
                opts.append(("new", tuple(str(self.r.text(lang, "ref.new"))
                                          for lang in self.r.languages)))
            try:
                picked = parsing.parse_choice(raw, opts)
            except parsing.ParseError:
                return self._answer(flow, cleared, slot, raw, ctx)
            if picked == "new":
                return self._accept(flow, cleared, slot, {"id": None, "name": pending["typed"]},
                                    ctx)
            cid, name = choices[int(picked)]
            return self._accept(flow, cleared, slot, {"id": cid, "name": name}, ctx,
                                bound={"id": cid, "name": name})
        if kind == "edit":
            keys: list[str] = pending["keys"]
            opts = [(k, (k,)) for k in keys]
            try:
                picked = parsing.parse_choice(raw, opts)
            except parsing.ParseError as exc:
                return Turn(state, (Outbound(self.r.text(ctx.lang, f"parse.{exc.code}",
                                                         **exc.params), kind="error"),
                                    *self._ask_pending(flow, state, ctx)))
            target = self._slot(flow, state, picked)
            if target is None:
                return Turn(cleared, self.ask(cleared, ctx))
            moved = replace(cleared, cursor=picked)
            return Turn(moved, (self._question(flow, moved, target, ctx),))
        return Turn(cleared, self.ask(cleared, ctx))

    # ---- saving -------------------------------------------------------------------------------

    def _record_id(self, flow: Flow, state: DialogState, alias: str, index: int | None) -> str:
        if alias in state.bound and index is None:
            return state.bound[alias]["id"]
        group_bound = state.bound.get(f"{alias}:{index}") if index is not None else None
        if group_bound:
            return group_bound["id"]
        if alias in state.bound:
            return state.bound[alias]["id"]
        return _derived_id(state.session_id, alias if index is None else f"{alias}:{index}")

    def _target(self, flow: Flow, state: DialogState, alias: str,
                index: int | None) -> tuple[str, str, tuple[str, str] | None]:
        record = flow.spec.records[alias]
        rid = self._record_id(flow, state, alias, index)
        parent = None
        if record.parent:
            column = record.parent_column or f"{record.parent}_id"
            same_iteration = index is not None and (flow.spec.id, alias) in self.iteration_parent
            parent = (column, self._record_id(flow, state, record.parent,
                                              index if same_iteration else None))
        return record.table, rid, parent

    def _fill(self, flow: Flow, alias: str, ctx: TurnContext,
              columns: Mapping[str, str | None] | None = None) -> dict[str, Any]:
        """The record's `fill` columns (or `columns`): "{now}", "{fact.path}" or a literal."""
        out: dict[str, Any] = {}
        for column, source in (flow.spec.records[alias].fill if columns is None
                               else columns).items():
            if source is None:
                out[column] = None
            elif source.startswith("{") and source.endswith("}"):
                path = source[1:-1].strip()
                if path == "now":
                    out[column] = ctx.now
                elif path == "user":
                    out[column] = uuid.UUID(ctx.user_id) if ctx.user_id else None
                else:
                    found = fact(facts_of(ctx), path)
                    if column.endswith("_id") and isinstance(found, str):
                        found = uuid.UUID(found)
                    out[column] = found
            else:
                out[column] = source
        return out

    def _saves(self, flow: Flow, state: DialogState, slot: Slot, ctx: TurnContext,
               clear: bool = False) -> list[Effect]:
        step = slot.step
        assert step is not None
        if not step.save:
            return []
        value = None if clear else state.answers.get(slot.key)
        alias, column, *sub = step.save.split(".")
        index = None
        if slot.group is not None and alias in self.group_records.get(
                (flow.spec.id, slot.group.group), (slot.group.record,)):
            index = slot.index
        if value is None and index is None and alias in state.bound:
            return []  # skipping a question about an existing record keeps what it holds
        if step.each:
            return self._save_each(flow, state, slot, alias, column, index, ctx)
        if flow.spec.records[alias].at_end:
            return []  # written whole when the flow is done (its columns are all required)
        table, rid, parent = self._target(flow, state, alias, index)
        if value is None and slot.group is not None and alias != slot.group.record and \
                not self._iteration_has(flow, state, slot, alias):
            return [Remove(table, rid)]  # a part of the iteration left out: no row for it
        values: dict[str, Any] = {}
        if sub:  # a key inside a JSON column: write the whole object from this dialog's answers
            values[column] = self._json_column(flow, state, alias, column, ctx)
        else:
            values[column] = _db_value(step, value, column)
            if step.save_currency:
                cur_column = step.save_currency.split(".")[1]
                values[cur_column] = value["currency"] if isinstance(value, dict) else None
        if flow.spec.records[alias].fill:
            values.update(self._fill(flow, alias, ctx))
        defaults = flow.spec.records[alias].defaults
        return [Save(table, rid, values, parent, dict(defaults) if defaults else None)]

    @staticmethod
    def _iteration_has(flow: Flow, state: DialogState, slot: Slot, alias: str) -> bool:
        """Whether any answer of this group iteration is saved to `alias`."""
        assert slot.group is not None
        prefix = f"{slot.group.group}.{slot.index}."
        return any(state.answers.get(prefix + step.id) is not None
                   for step in slot.group.steps
                   if step.save and step.save.split(".")[0] == alias)

    def _save_each(self, flow: Flow, state: DialogState, slot: Slot, alias: str, column: str,
                   index: int | None, ctx: TurnContext) -> list[Effect]:
        """A checklist: one row per ticked value; values no longer ticked are taken back."""
        chosen = state.answers.get(slot.key) or []
        table, _rid, parent = self._target(flow, state, alias, index)
        base = f"{alias}:{index}" if index is not None else alias
        effects: list[Effect] = []
        for option in flow.options_for(slot.step) if slot.step else ():
            rid = str(uuid.uuid5(uuid.UUID(state.session_id), f"{base}:{option.value}"))
            if option.value in chosen:
                effects.append(Save(table, rid, {column: option.value,
                                                 **self._fill(flow, alias, ctx)}, parent))
            else:
                effects.append(Remove(table, rid))
        return effects

    def _json_column(self, flow: Flow, state: DialogState, alias: str,
                     column: str, ctx: TurnContext) -> dict[str, Any]:
        # the keys this dialog answers, over what the record already holds (a check answered
        # in an earlier dialog is kept, not dropped)
        stored = fact(facts_of(ctx), f"{alias}.{column}") if alias in state.bound else None
        data: dict[str, Any] = dict(stored) if isinstance(stored, Mapping) else {}
        for item in flow.spec.steps:
            if isinstance(item, StepDef) and item.save:
                parts = item.save.split(".")
                if len(parts) == 3 and parts[0] == alias and parts[1] == column \
                        and item.id in state.answers:
                    data[parts[2]] = state.answers[item.id]
        return data

    # ---- finishing ----------------------------------------------------------------------------

    def _finish(self, flow: Flow, state: DialogState, ctx: TurnContext,
                before: tuple[Outbound, ...], effects: tuple[Effect, ...],
                slots: list[Slot]) -> Turn:
        lang = ctx.lang
        rows = [self._summary_row(flow, state, s, lang) for s in slots if s.kind == "step"]
        summary = self.r.template("summary.j2", lang, title=self.r.pick(flow.spec.title, lang),
                                  rows=[r for r in rows if r is not None])
        messages: list[Outbound] = [*before, Outbound(summary, kind="summary")]
        extra: list[Effect] = []
        ids = {alias: self._record_id(flow, state, alias, None) for alias in flow.spec.records
               if not self._is_group_record(flow, alias)}
        if flow.spec.verdict:
            verdict_msg, verdict_effects = self._verdict(flow, state, ctx)
            messages.append(verdict_msg)
            extra.extend(verdict_effects)
        if flow.spec.done:
            messages.append(Outbound(self.r.pick(flow.spec.done, lang, **self._extras(flow, ctx)),
                                     kind="say"))
        extra.extend(self._at_end_saves(flow, state, ctx))
        extra.extend(self._on_done_saves(flow, state, ctx))
        logged = {alias: rid for alias, rid in ids.items() if self._written(flow, state, alias)}
        account_id = logged.get("account") or fact(facts_of(ctx), "opportunity.account_id")
        extra.append(Log(kind=flow.id, note=str(self.r.pick(flow.spec.title, "en")),
                         account_id=account_id, opportunity_id=logged.get("opportunity"),
                         contact_id=logged.get("contact")))
        extra.extend(self._changes(flow, state, logged, account_id))
        finished = replace(state, status="done")
        next_flow = None
        if flow.spec.then:
            handed: dict[str, dict[str, str]] = {}
            for alias, rid in ids.items():
                name = self._record_name(flow, state, alias)
                handed[alias] = {"id": rid, "name": name or "", "handed": "1"}
            next_flow = (flow.spec.then, handed)
        return Turn(finished, tuple(messages), (*effects, *extra), next_flow)

    def _changes(self, flow: Flow, state: DialogState, logged: Mapping[str, str],
                 account_id: str | None) -> list[Effect]:
        """A stored value the dialog changed (`audit`), logged with from, to and why."""
        effects: list[Effect] = []
        for step in flow.all_steps():
            was = state.answers.get(_was_key(step.id))
            new = state.answers.get(step.id)
            if not step.audit or was is None or new is None:
                continue
            why = state.answers.get(step.audit)
            label = self.r.pick(step.label or step.ask, "en")
            note = f"{label}: {_shown(was)} -> {_shown(new)}" + (f" ({why})" if why else "")
            effects.append(Log(kind="change", note=note, account_id=account_id,
                               opportunity_id=logged.get("opportunity")
                               or state.bound.get("opportunity", {}).get("id")))
        return effects

    def _at_end_saves(self, flow: Flow, state: DialogState, ctx: TurnContext) -> list[Effect]:
        """Records written in one go at the end (`at_end: true`), from every answer saved to
        them, when at least one was given."""
        effects: list[Effect] = []
        for alias, record in flow.spec.records.items():
            if not record.at_end or alias in state.bound:
                continue
            values: dict[str, Any] = {}
            for item in flow.spec.steps:
                if not isinstance(item, StepDef) or not item.save:
                    continue
                target, column, *_sub = item.save.split(".")
                value = state.answers.get(item.id)
                if target != alias or value is None:
                    continue
                values[column] = _db_value(item, value, column)
                if item.save_currency and isinstance(value, dict):
                    values[item.save_currency.split(".")[1]] = value["currency"]
            if values:
                values.update(self._fill(flow, alias, ctx))
                table, rid, parent = self._target(flow, state, alias, None)
                effects.append(Save(table, rid, values, parent))
        return effects

    def _on_done_saves(self, flow: Flow, state: DialogState, ctx: TurnContext) -> list[Effect]:
        """The `on_done` columns of the records the dialog is about; a changed `stage` is
        logged as a stage change (`<from> -> <to>`, what the analytics read)."""
        effects: list[Effect] = []
        for alias, record in flow.spec.records.items():
            if not record.on_done or not self._written(flow, state, alias):
                continue
            values = self._fill(flow, alias, ctx, record.on_done)
            table, rid, parent = self._target(flow, state, alias, None)
            effects.append(Save(table, rid, values, parent))
            before = fact(facts_of(ctx), f"{alias}.stage")
            if "stage" in values and before and values["stage"] != before:
                effects.append(Log(kind="stage_change", note=f"{before} -> {values['stage']}",
                                   account_id=fact(facts_of(ctx), f"{alias}.account_id"),
                                   opportunity_id=rid))
        return effects

    @staticmethod
    def _written(flow: Flow, state: DialogState, alias: str) -> bool:
        """The record exists: bound to an existing row, or saved by an answer of this dialog."""
        if alias in state.bound:
            return True
        saving = {i.id for i in flow.spec.steps
                  if isinstance(i, StepDef) and i.save and i.save.split(".")[0] == alias}
        return any(state.answers.get(key) is not None for key in saving)

    @staticmethod
    def _is_group_record(flow: Flow, alias: str) -> bool:
        return any(isinstance(i, GroupDef) and i.record == alias for i in flow.spec.steps)

    def _record_name(self, flow: Flow, state: DialogState, alias: str) -> str | None:
        if alias in state.bound:
            return state.bound[alias].get("name")
        for item in flow.spec.steps:
            if isinstance(item, StepDef) and item.save == f"{alias}.name":
                value = state.answers.get(item.id)
                return str(value) if value is not None else None
        return None

    def _verdict(self, flow: Flow, state: DialogState,
                 ctx: TurnContext) -> tuple[Outbound, list[Effect]]:
        spec = flow.spec.verdict
        assert spec is not None
        failed = [c for c in spec.checks if not self._holds(c.passes, state.answers, "", ctx)]
        is_opportunity = not failed
        aspects = {"clear": True, "imminent": True, "valuable": True}
        for check in failed:
            aspects[check.aspect] = False
        reasons = [self.r.pick(c.reason, ctx.lang) for c in failed]
        text = self.r.template("verdict.j2", ctx.lang, opportunity=is_opportunity,
                               aspects=aspects, reasons=reasons)
        table, rid, parent = self._target(flow, state, spec.record, None)
        values: dict[str, Any] = {
            "verdict": "opportunity" if is_opportunity else "keep_in_touch",
            "verdict_reasons": [check_key(c) for c in failed],
            "qualification": {check_key(c): state.answers.get(c.step) for c in spec.checks},
            "last_activity_at": ctx.now,
        }
        # judging an opportunity again moves it only while it is still at the top of the
        # funnel: one further on keeps its stage
        current = fact(facts_of(ctx), "opportunity.stage")
        if current in (None, "", "analysis", "trust", "keep_in_touch"):
            values["stage"] = "trust" if is_opportunity else "keep_in_touch"
            if values["stage"] != current:
                values["stage_entered_at"] = ctx.now
        return Outbound(text, kind="verdict"), [Save(table, rid, values, parent)]

    # ---- messages -----------------------------------------------------------------------------

    def _question(self, flow: Flow, state: DialogState, slot: Slot, ctx: TurnContext,
                  slots: Sequence[Slot] | None = None) -> Outbound:
        lang = ctx.lang
        slots = slots if slots is not None else self._expand(flow, state, ctx)
        keys = [s.key for s in slots]
        progress = (keys.index(slot.key) + 1 if slot.key in keys else len(keys), len(keys))
        scope = self._scope(flow, state, slot, lang)
        options: tuple[Option, ...] = ()
        multi = False
        hint: Markup | None = None
        current: Markup | None = None
        if slot.kind in ("start", "more"):
            group = slot.group
            assert group is not None
            texts = group.start if slot.kind == "start" and group.start else group.more
            ask = self._ask(texts, lang, scope, (slot.index or 0) + 1,
                            self._extras(flow, ctx, state, slot) if flow.spec.uses else {})
            options = self._yes_no(flow, lang)
        else:
            step = slot.step
            assert step is not None
            ask = self._ask(step.ask, lang, scope, (slot.index or 0) + 1,
                            self._extras(flow, ctx, state, slot) if flow.spec.uses else {})
            if step.type in OPTION_TYPES or step.type == "yes_no":
                options = tuple(Option(o.value, o.label(lang)) for o in flow.options_for(step))
                multi = step.type == "multi_choice"
            elif _offers(step) and ctx.suggest is not None:
                # the rows the asker most likely means, to tap (their names answer it);
                # labels are markup like the flows' own, and a name is the user's text
                options = tuple(Option(name, str(escape(name)))
                                for _id, name in _suggestions(ctx, step.type, state))
            hint = self._hint(step, lang)
            if slot.key in state.answers and state.answers[slot.key] is not None:
                current = self._display(flow, step, state.answers[slot.key], lang)
        text = self._frame(lang, progress, ask, hint, current)
        controls = self._controls(slot, lang)
        return Outbound(text, kind="question", options=options, multi=multi, controls=controls,
                        progress=progress)

    def _ask(self, texts: Mapping[str, str], lang: str, scope: _Scope, n: int,
             extras: dict[str, Any]) -> Markup:
        """A question's text. One that uses only earlier answers (`a.…`) and `n` is rendered
        once per distinct set of the values it uses (the template run is the cost)."""
        source = self.r.source(texts, lang)
        names = None if extras else self._answer_names(source)
        if names is None:
            return self.r.pick(texts, lang, a=scope, n=n, **extras)
        key = (source, n, tuple(scope.value(name) for name in names))
        text = self._asked.get(key)
        if text is None:
            if len(self._asked) >= FRAME_CACHE_SIZE:
                self._asked.clear()
            text = self._asked[key] = self.r.pick(texts, lang, a=scope, n=n)
        return text

    def _answer_names(self, source: str) -> tuple[str, ...] | None:
        """The answers (`a.x`, `a['x']`) a text uses, or None when it uses anything else
        than those and `n` (then it is rendered every time)."""
        if source in self._names_of:
            return self._names_of[source]
        names: list[str] | None = []
        tree = self.r.env.parse(source)
        used = {node.name for node in tree.find_all(nodes.Name)}
        calls_on_a = any(isinstance(call.node, nodes.Getattr)
                         and isinstance(call.node.node, nodes.Name) and call.node.node.name == "a"
                         for call in tree.find_all(nodes.Call))
        if used - {"a", "n"} or calls_on_a:
            names = None
        else:
            refs = 0
            for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
                target = getattr(node, "node", None)
                if not (isinstance(target, nodes.Name) and target.name == "a"):
                    continue
                if isinstance(node, nodes.Getattr):
                    name = node.attr
                elif (isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const)
                      and isinstance(node.arg.value, str)):
                    name = node.arg.value
                else:
                    names = None
                    break
                refs += 1
                assert names is not None
                if name not in names:
                    names.append(name)
            a_uses = sum(1 for node in tree.find_all(nodes.Name) if node.name == "a")
            if names is not None and a_uses != refs:  # `a` used whole (a loop, a filter …)
                names = None
        found = self._names_of[source] = tuple(names) if names is not None else None
        return found

    def _frame(self, lang: str, progress: tuple[int, int], ask: Markup, hint: Markup | None,
               current: Markup | None) -> Markup:
        key = (lang, progress, ask, hint, current)
        text = self._framed.get(key)
        if text is None:
            if len(self._framed) >= FRAME_CACHE_SIZE:
                self._framed.clear()
            text = self._framed[key] = self.r.template(
                "question.j2", lang, progress=progress, ask=ask, hint=hint, current=current)
        return text

    def _controls(self, slot: Slot, lang: str) -> tuple[Option, ...]:
        words = ["back"]
        if slot.kind == "step" and slot.step is not None and slot.step.optional:
            words.append("skip")
        if slot.kind == "step" and slot.step is not None and slot.step.tip:
            words.append("tip")
        words.append("cancel")
        labels = self.control_labels.get(lang) or self.control_labels["en"]
        return tuple(Option(w, labels[w]) for w in words)

    def _yes_no(self, flow: Flow, lang: str) -> tuple[Option, ...]:
        return tuple(Option(o.value, o.label(lang)) for o in flow.options["yes_no"])

    def _hint(self, step: StepDef, lang: str) -> Markup | None:
        parts: list[Markup] = []
        if step.type in ("money", "date", "number", "multi_choice", "account"):
            parts.append(self.r.text(lang, f"hint.{step.type}"))
        elif step.type == "contact":
            parts.append(self.r.text(lang, "hint.contact" if step.allow_new
                                     else "hint.contact_known"))
        if step.type == "rating":
            parts.append(self.r.text(lang, "hint.rating", low=step.low, high=step.high))
        if step.optional:
            parts.append(self.r.text(lang, "hint.optional"))
        if not parts:
            return None
        return Markup(" · ").join(parts)

    def _scope(self, flow: Flow, state: DialogState, slot: Slot, lang: str) -> _Scope:
        """Earlier answers by step id, shown as text, for flow texts like "{{ a.name }}";
        worked out only for the answers a text actually uses."""
        prefix = f"{slot.group.group}.{slot.index}." if slot.group is not None else ""

        def lookup(step_id: str) -> Markup | None:
            value = state.answers.get(prefix + step_id) if prefix else None
            if value is None:
                value = state.answers.get(step_id)
            if value is None:
                return None
            return self._display(flow, flow.step(step_id), value, lang)

        return _Scope(lookup)

    def _extras(self, flow: Flow, ctx: TurnContext, state: DialogState | None = None,
                slot: Slot | None = None) -> dict[str, Any]:
        """What the texts of a flow that `uses` facts may use besides the answers: the facts
        (`f`), the catalogs (`t('funnel.role.designer')`) and the stored answers (`v`)."""
        if not flow.spec.uses:
            return {}  # the flow's texts use none of it: nothing to build, every turn
        lang = ctx.lang
        english = self.r.catalogs["en"]

        def t(key: str, **params: Any) -> Markup:
            # a key built from a fact not looked up yet (`'funnel.role.' ~ r`) is blank
            return self.r.text(lang, key, **params) if key in english else Markup("")

        extras: dict[str, Any] = {"f": _Lenient(facts_of(ctx)), "t": t}
        if state is not None and slot is not None:
            extras["v"] = self._raw_scope(state, slot)
        return extras

    @staticmethod
    def _raw_scope(state: DialogState, slot: Slot) -> _Scope:
        """Earlier answers as stored (option values, ISO dates), for conditions in texts."""
        prefix = f"{slot.group.group}.{slot.index}." if slot.group is not None else ""

        def lookup(step_id: str) -> Any:
            value = state.answers.get(prefix + step_id) if prefix else None
            return value if value is not None else state.answers.get(step_id)

        return _Scope(lookup)

    def _reactions(self, flow: Flow, state: DialogState, slot: Slot, value: Any,
                   ctx: TurnContext) -> tuple[Outbound, ...]:
        """The coaching a step declares for the answer just given (`react`)."""
        step = slot.step
        if step is None or not step.react or value is None:
            return ()
        if step.type == "yes_no":
            values = ["yes" if value else "no"]
        else:
            values = value if isinstance(value, list) else [value]
        scope = self._scope(flow, state, slot, ctx.lang)
        out = []
        for item in values:
            texts = step.react.get(str(item))
            if texts:
                extras = self._extras(flow, ctx, state, slot)
                out.append(Outbound(self.r.pick(texts, ctx.lang, a=scope, **extras),
                                    kind="coach"))
        return tuple(out)

    def _tip(self, flow: Flow, slot: Slot, ctx: TurnContext) -> Outbound:
        step = slot.step
        if step is not None and step.tip:
            body = self.r.pick(step.tip, ctx.lang, **self._extras(flow, ctx))
        else:
            body = self.r.text(ctx.lang, "tip.none")
        return Outbound(self.r.template("tip.j2", ctx.lang, body=body), kind="tip")

    def _reask(self, flow: Flow, state: DialogState, ctx: TurnContext, key: str,
               **params: Any) -> Turn:
        error = Outbound(self.r.text(ctx.lang, key, **params), kind="error")
        return Turn(state, (error, *self.ask(state, ctx)))

    def _ask_pending(self, flow: Flow, state: DialogState,
                     ctx: TurnContext) -> tuple[Outbound, ...]:
        pending = state.pending or {}
        lang = ctx.lang
        kind = pending.get("kind")
        if kind == "confirm":
            text = self.r.text(lang, "ref.confirm", name=pending["name"])
            return (Outbound(text, kind="question", options=self._yes_no(flow, lang)),)
        if kind == "pick":
            opts = [Option(str(i), name) for i, (_cid, name) in enumerate(pending["choices"])]
            slot = self._slot(flow, state, state.cursor) if state.cursor else None
            if slot is not None and slot.step is not None and slot.step.allow_new:
                opts.append(Option("new", str(self.r.text(lang, "ref.new_named",
                                                          name=pending["typed"]))))
            return (Outbound(self.r.text(lang, "ref.pick", typed=pending["typed"]),
                             kind="question", options=tuple(opts)),)
        if kind == "edit":
            opts = []
            for key in pending["keys"]:
                target = self._slot(flow, state, key)
                if target is None or target.step is None:
                    continue
                row = self._summary_row(flow, state, target, lang)
                label = f"{row['label']}: {row['value']}" if row else key
                opts.append(Option(key, label))
            return (Outbound(self.r.text(lang, "edit.which"), kind="question",
                             options=tuple(opts)),)
        return ()

    def _summary_row(self, flow: Flow, state: DialogState, slot: Slot,
                     lang: str) -> dict[str, Any] | None:
        step = slot.step
        if step is None or slot.key not in state.answers:
            return None
        value = state.answers[slot.key]
        label = self.r.pick(step.label or step.ask, lang)
        if slot.group is not None:
            group_label = self.r.pick(slot.group.label, lang)
            label = Markup("{} {} · {}").format(group_label, (slot.index or 0) + 1, label)
        shown = self._display(flow, step, value, lang) if value is not None else \
            self.r.text(lang, "summary.skipped")
        return {"label": label, "value": shown}

    def _display(self, flow: Flow, step: StepDef, value: Any, lang: str) -> Markup:
        """An answer as the rep would read it (escaped)."""
        if value is None:
            return Markup("")
        kind = step.type
        if kind in OPTION_TYPES:
            labels = {o.value: o.label(lang) for o in flow.options_for(step)}
            values = value if isinstance(value, list) else [value]
            sep = "、" if lang == "zh" else ", "
            return escape(sep.join(labels.get(str(v), str(v)) for v in values))
        if kind == "yes_no":
            opts = {o.value: o.label(lang) for o in flow.options["yes_no"]}
            return escape(opts["yes" if value else "no"])
        if kind == "money" and isinstance(value, dict):
            return escape(format_money(value))
        if kind in REFERENCE_TYPES and isinstance(value, dict):
            return escape(value.get("name", ""))
        if kind == "rating":
            return escape(f"{value}/{step.high}")
        return escape(str(value))


class _Scope(Mapping[str, Any]):
    """Earlier answers looked up one at a time, as a text uses them."""

    def __init__(self, lookup: Callable[[str], Any]) -> None:
        self._lookup = lookup

    def __getitem__(self, key: str) -> Any:
        value = self._lookup(key)
        if value is None:
            raise KeyError(key)
        return value

    def value(self, key: str) -> Any:
        """The answer shown as text, or None."""
        return self._lookup(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class _Lenient:
    """Facts as flow texts see them: a missing fact is blank (empty, false) rather than an
    error, since a question may be rendered before its subject is bound and looked up."""

    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, key: Any) -> Any:
        try:
            item = self._value[key]
        except (KeyError, IndexError, TypeError):
            return _BLANK
        return _Lenient(item) if isinstance(item, Mapping | list | tuple) else item

    def get(self, key: Any, default: Any = None) -> Any:
        found = self[key]
        return default if found is _BLANK else found

    def __iter__(self) -> Iterator[Any]:
        for item in self._value if isinstance(self._value, list | tuple) else ():
            yield _Lenient(item) if isinstance(item, Mapping | list | tuple) else item

    def __len__(self) -> int:
        return len(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __str__(self) -> str:
        return ""

    def __eq__(self, other: object) -> bool:
        return bool(self._value == other)

    def __hash__(self) -> int:
        return id(self)

    def __lt__(self, other: object) -> bool:
        return False

    __le__ = __gt__ = __ge__ = __lt__


_BLANK = _Lenient({})


@lru_cache(maxsize=65_536)
def _derived_id(session_id: str, name: str) -> str:
    """A dialog's record id, the same every turn (uuid5 of the dialog and the record's alias):
    remembered, since every answer that saves asks for it again."""
    return str(uuid.uuid5(uuid.UUID(session_id), name))


class _TooLong(Exception):
    def __init__(self, length: int, limit: int) -> None:
        super().__init__(length)
        self.length = length
        self.limit = limit


class _Refused(Exception):
    """An answer the column it is saved into cannot hold (`store.limits.LimitError`)."""

    def __init__(self, code: str, params: Mapping[str, Any]) -> None:
        super().__init__(code)
        self.code = code
        self.params = dict(params)


def _was_key(step_id: str) -> str:
    """Where an audited step keeps the value the record held before the answer changed it."""
    return f"{step_id}@was"


def _audit(slot: Slot, value: Any, ctx: TurnContext, answers: dict[str, Any]) -> None:
    """Keep what the record held when the answer changes it (cleared when it does not)."""
    step = slot.step
    assert step is not None and step.save
    if value is None:
        return  # skipped: the record keeps what it holds, and what it held before stays known
    # answered again (after `back`): the record already holds the first answer, so the value
    # before the dialog is the one kept the first time
    stored = answers.get(_was_key(step.id))
    if stored is None:
        stored = fact(facts_of(ctx), step.save)
        if step.type == "money" and step.save_currency:
            currency = fact(facts_of(ctx), step.save_currency) or ""
            stored = {"amount": stored, "currency": currency} if stored not in (None, "") \
                else None
    changed = stored not in (None, "") and value is not None and (
        _comparable(stored) != _comparable(value))
    if changed:
        answers[_was_key(step.id)] = stored
    else:
        answers.pop(_was_key(step.id), None)


def _comparable(value: Any) -> Any:
    if isinstance(value, dict) and "amount" in value:
        return (Decimal(str(value["amount"])), value.get("currency") or "")
    return value


def _shown(value: Any) -> str:
    return format_money(value) if isinstance(value, dict) and "amount" in value else str(value)


def format_money(value: dict[str, Any]) -> str:
    amount = Decimal(str(value["amount"]))
    text = f"{amount:,.2f}"
    if text.endswith(".00"):
        text = text[:-3]
    return f"{text} {value['currency']}"


def _as_number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, dict) and "amount" in value:
        value = value["amount"]
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _db_value(step: StepDef, value: Any, column: str = "") -> Any:
    """An answer as the column stores it (a reference saved to an `*_id` column: its id)."""
    if value is None:
        return None
    if step.type in REFERENCE_TYPES and column.endswith("_id") and isinstance(value, dict):
        return uuid.UUID(value["id"]) if value.get("id") else None
    kind = step.type
    if kind == "number":
        return Decimal(str(value))
    if kind == "money":
        return Decimal(str(value["amount"]))
    if kind == "date":
        return date.fromisoformat(value)
    if kind in REFERENCE_TYPES:
        return value.get("name")
    return value


__all__ = ["Engine", "Log", "OptionDef", "Remove", "Save", "Turn"]
