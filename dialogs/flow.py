"""Flows as data: the schema of a flow file, and loading with validation.

A broken flow file fails at start-up with `FlowError("<file>: step '<id>': <problem>")`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from dialogs.errors import FlowError

FLOWS_DIR = Path(__file__).with_name("flows")
LANGS: tuple[str, ...] = ("en", "zh")

StepType = Literal[
    "text", "choice", "multi_choice", "yes_no", "number", "money", "date", "rating",
    "account", "contact", "opportunity", "invoice",
]
# answers that name an existing row, looked up by the host (candidates in the turn context)
REFERENCE_TYPES = {"account", "contact", "opportunity", "invoice"}
OPTION_TYPES = {"choice", "multi_choice"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Texts = dict[str, str]  # language -> jinja2 text


class OptionDef(_Strict):
    value: str
    en: str
    zh: str

    def label(self, lang: str) -> str:
        return str(getattr(self, lang, self.en))


class Condition(_Strict):
    """Ask a step only when an earlier answer says so. Exactly one test besides `step`."""

    step: str | None = None
    # instead of an earlier answer, test a fact the host looked up (`opportunity.stage`)
    fact: str | None = None
    equals: Any = None
    not_equals: Any = None
    in_: list[Any] | None = Field(None, alias="in")
    contains: str | None = None
    answered: bool | None = None
    min: float | None = None
    max: float | None = None
    within_days: int | None = None
    all: list[Condition] | None = None
    any: list[Condition] | None = None

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        tests = [
            n for n in ("equals", "not_equals", "in_", "contains", "answered", "min", "max",
                        "within_days", "all", "any")
            if getattr(self, n) is not None
        ]
        if not tests:
            raise ValueError("a condition needs a test (equals, in, answered, min, max, ...)")
        if self.all is None and self.any is None and self.step is None and self.fact is None:
            raise ValueError("a condition needs `step` (or `fact`)")
        if self.step is not None and self.fact is not None:
            raise ValueError("a condition tests `step` or `fact`, not both")
        return self

    def steps(self) -> Iterable[str]:
        if self.step:
            yield self.step
        for sub in (self.all or []) + (self.any or []):
            yield from sub.steps()


class StepDef(_Strict):
    id: str
    type: StepType
    ask: Texts
    tip: Texts | None = None
    label: Texts | None = None
    optional: bool = False
    save: str | None = None
    save_currency: str | None = None
    bind: str | None = None
    options: str | list[OptionDef] | None = None
    when: Condition | None = None
    max_length: int = 2000
    min_value: float | None = None
    max_value: float | None = None
    low: int = 1
    high: int = 5
    prefer: Literal["future", "past"] = "future"
    allow_new: bool = False
    private: bool = False
    # coaching shown right after the answer, per option value (a choice, each value of a
    # multi-choice, "yes"/"no"); texts may use the answers (`a`) and the facts (`f`)
    react: dict[str, Texts] | None = None
    # the order of dates, as data: a date may not lie before (`not_before`) or after
    # (`not_after`) each named date: `now` (today), an earlier date step of the flow
    # (`issued`), or a fact of the record the flow is about (`opportunity.contract_on`).
    # Facts (signed, paid, delivered) are `not_after: now`; plans (a next step, a follow-up)
    # are `not_before: now`, which a user may override by typing the past date again.
    not_before: str | list[str] | None = None
    not_after: str | list[str] | None = None
    # a money answer may not exceed this fact (what is still owed) and must be in the
    # currency of `currency_fact`
    max_fact: str | None = None
    currency_fact: str | None = None
    # a multi-choice saved as one row per chosen value (a checklist: buying signals)
    each: bool = False
    # a text answer not already in its `save` column anywhere in the org (an invoice number):
    # the host looks the typed value up before the turn (`FlowContext.taken`)
    unique: bool = False
    # a changed stored value is a fact of its own: when the answer differs from what the record
    # held (a contract amount that is not the budget), the change is logged as an activity —
    # who, from what to what — with the answer of the named later step as the reason
    audit: str | None = None


class GroupDef(_Strict):
    group: str
    record: str
    min: int = Field(1, ge=0, le=1)
    max: int = Field(20, ge=1, le=100)
    start: Texts | None = None
    more: Texts
    label: Texts
    steps: list[StepDef]
    when: Condition | None = None


class RecordDef(_Strict):
    table: str
    parent: str | None = None
    parent_column: str | None = None
    # columns every save of this record sets: "{now}", "{<fact path>}", or a literal code
    fill: dict[str, str] = {}
    # written once, when the flow is done, from all its answers (a row whose columns are all
    # required, like an invoice); otherwise each answer is written as it comes
    at_end: bool = False
    # values for required columns that later questions fill in, used when the row is inserted
    defaults: dict[str, str] = {}
    # columns written once, when the flow is done (same forms as `fill`; `~` clears one): a
    # deal marked lost only when the whole `lost` dialog is answered
    on_done: dict[str, str | None] = {}


class Refusal(_Strict):
    """A flow that does not apply to the record it is about: said, and the dialog closed,
    before any question is asked or anything saved (a won deal cannot be lost)."""

    when: Condition
    say: Texts


class VerdictCheck(_Strict):
    step: str
    # the key it is recorded under in the verdict's JSON column (one vocabulary with the
    # readers: store.enums.JSON_KEYS); the step's id when it is the same word
    key: str | None = None
    aspect: Literal["clear", "imminent", "valuable"]
    passes: Condition
    reason: Texts


class VerdictDef(_Strict):
    record: str
    column: str = "qualification"
    checks: list[VerdictCheck]


def _item_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "group" if "group" in value else "step"
    return "group" if isinstance(value, GroupDef) else "step"


Item = Annotated[
    Annotated[StepDef, Tag("step")] | Annotated[GroupDef, Tag("group")],
    Discriminator(_item_kind),
]


class FlowDef(_Strict):
    id: str
    # the command that opens this flow (its aliases: `command.<name>` in the catalogs; its help
    # line: `help.cmd.<name>`); `order` places it in the help
    command: str | None = None
    order: int = 100
    title: Texts
    intro: Texts
    records: dict[str, RecordDef] = {}
    steps: list[Item]
    verdict: VerdictDef | None = None
    # tested once the record the flow is about is known (its facts: `when: {fact: ...}`)
    refuse: list[Refusal] = []
    then: str | None = None
    done: Texts | None = None
    # what the host looks up for this flow's texts and checks (`f` in texts): named fact sets
    uses: list[str] = []
    # a report the host adds when the flow is done (e.g. the SPIN question mix)
    report: str | None = None


@dataclass(frozen=True)
class Flow:
    """A loaded, validated flow, with its steps indexed."""

    spec: FlowDef
    source: str
    options: Mapping[str, tuple[OptionDef, ...]]

    @property
    def id(self) -> str:
        return self.spec.id

    def step(self, step_id: str) -> StepDef:
        for item in self.spec.steps:
            if isinstance(item, StepDef) and item.id == step_id:
                return item
            if isinstance(item, GroupDef):
                for sub in item.steps:
                    if sub.id == step_id:
                        return sub
        raise KeyError(step_id)

    def all_steps(self) -> list[StepDef]:
        """Every step, those inside groups included, in order."""
        return [s for item in self.spec.steps
                for s in (item.steps if isinstance(item, GroupDef) else [item])]

    def group(self, group_id: str) -> GroupDef:
        for item in self.spec.steps:
            if isinstance(item, GroupDef) and item.group == group_id:
                return item
        raise KeyError(group_id)

    def options_for(self, step: StepDef) -> tuple[OptionDef, ...]:
        if step.type == "yes_no":
            return self.options["yes_no"]
        if isinstance(step.options, str):
            return self.options[step.options]
        return tuple(step.options or ())


def _fail(source: str, where: str, problem: str) -> FlowError:
    return FlowError(f"{source}: {where}: {problem}")


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise FlowError(f"{path.name}: not valid YAML: {exc}") from exc


def load_vocab(path: Path, langs: tuple[str, ...] = LANGS) -> dict[str, tuple[OptionDef, ...]]:
    """Shared option lists (industries, styles, stages ...), by name."""
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise FlowError(f"{path.name}: expected a mapping of option-list names to lists")
    vocab: dict[str, tuple[OptionDef, ...]] = {}
    for name, items in raw.items():
        try:
            opts = tuple(OptionDef.model_validate(i) for i in items)
        except (ValidationError, TypeError) as exc:
            raise _fail(path.name, f"options '{name}'", _first_error(exc)) from exc
        values = [o.value for o in opts]
        if len(set(values)) != len(values):
            raise _fail(path.name, f"options '{name}'", "duplicate values")
        vocab[name] = opts
    return vocab


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        return f"{loc}: {err['msg']}" if loc else str(err["msg"])
    return str(exc)


def _locate(raw: Any, loc: tuple[Any, ...]) -> str:
    """Name the step a pydantic error points at, for a message a sales-ops person can act on."""
    node = raw
    where = "flow"
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, dict) and "id" in node and isinstance(node.get("id"), str):
            where = f"step '{node['id']}'"
        elif isinstance(node, dict) and "group" in node:
            where = f"group '{node['group']}'"
    return where


def parse_flow(
    raw: Any,
    source: str,
    vocab: Mapping[str, tuple[OptionDef, ...]],
    *,
    columns: Mapping[str, set[str]] | None = None,
    langs: tuple[str, ...] = LANGS,
    json_keys: Mapping[tuple[str, str], set[str]] | None = None,
) -> Flow:
    """Validate one flow's data; `columns` (table -> column names) checks every `save`, and
    `json_keys` ((table, column) -> keys) every key saved inside a JSON column."""
    if not isinstance(raw, dict):
        raise FlowError(f"{source}: expected a mapping with id, title, steps")
    try:
        spec = FlowDef.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        last_index = max((i for i, p in enumerate(loc) if isinstance(p, int)), default=-1)
        tail = [str(p) for p in loc[last_index + 1:] if p not in ("step", "group")]
        field = ".".join(tail) or ".".join(str(p) for p in loc)
        raise _fail(source, _locate(raw, loc), f"{field}: {err['msg']}") from exc
    flow = Flow(spec=spec, source=source, options=vocab)
    _check(flow, columns, langs)
    if json_keys is not None:
        _check_json_keys(flow, json_keys)
    return flow


def date_bounds(value: str | list[str] | None) -> tuple[str, ...]:
    """The dates a `not_before` / `not_after` names, as a tuple."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def check_key(check: VerdictCheck) -> str:
    """The key a verdict check is recorded under."""
    return check.key or check.step


def _check_json_keys(flow: Flow, json_keys: Mapping[tuple[str, str], set[str]]) -> None:
    """Every key a flow writes inside a JSON column is one its readers know."""
    spec, src = flow.spec, flow.source

    def known(table: str, column: str, key: str, where: str) -> None:
        keys = json_keys.get((table, column))
        if keys is None:
            raise _fail(src, where, f"'{table}.{column}' has no declared keys "
                                    "(store.enums.JSON_KEYS)")
        if key not in keys:
            raise _fail(src, where, f"'{key}' is not a key of {table}.{column}; "
                                    f"known: {', '.join(sorted(keys))}")

    for step in flow.all_steps():
        parts = (step.save or "").split(".")
        if len(parts) == 3 and parts[0] in spec.records:
            known(spec.records[parts[0]].table, parts[1], parts[2], f"step '{step.id}'")
    if spec.verdict is not None and spec.verdict.record in spec.records:
        table = spec.records[spec.verdict.record].table
        for check in spec.verdict.checks:
            known(table, spec.verdict.column, check_key(check), f"verdict check '{check.step}'")


def _check_texts(source: str, where: str, name: str, texts: Texts | None,
                 langs: tuple[str, ...]) -> None:
    if texts is None:
        return
    missing = [lang for lang in langs if not texts.get(lang, "").strip()]
    if missing:
        raise _fail(source, where, f"`{name}` has no text in {', '.join(missing)}")


def _check(flow: Flow, columns: Mapping[str, set[str]] | None, langs: tuple[str, ...]) -> None:
    spec, src = flow.spec, flow.source
    for name in ("title", "intro", "done"):
        _check_texts(src, "flow", name, getattr(spec, name), langs)
    for n, refusal in enumerate(spec.refuse):
        if list(refusal.when.steps()):
            raise _fail(src, f"refuse {n + 1}", "`when` tests facts (`fact:`), not answers")
        _check_texts(src, f"refuse {n + 1}", "say", refusal.say, langs)
    for alias, rec in spec.records.items():
        if columns is not None and rec.table not in columns:
            raise _fail(src, f"record '{alias}'", f"unknown table '{rec.table}'")
        if rec.parent and rec.parent not in spec.records:
            raise _fail(src, f"record '{alias}'", f"parent '{rec.parent}' is not a record")
        for column in [*rec.fill, *rec.defaults, *rec.on_done]:
            if columns is not None and column not in columns.get(rec.table, set()):
                raise _fail(src, f"record '{alias}'",
                            f"`fill`: table '{rec.table}' has no column '{column}'")
    seen: set[str] = set()
    dates: dict[str, str] = {}

    def check_step(step: StepDef, scope: set[str]) -> None:
        where = f"step '{step.id}'"
        if step.id in seen:
            raise _fail(src, where, "duplicate step id")
        for name in ("ask", "tip", "label"):
            _check_texts(src, where, name, getattr(step, name), langs)
        if step.when:
            for ref in step.when.steps():
                # `<step>@was`: the value an earlier `audit` step changed (set only when the
                # answer differs from what the record held)
                base, was, _rest = ref.partition("@was")
                if was and not _rest and base in scope and flow.step(base).audit:
                    continue
                if ref not in scope:
                    raise _fail(src, where, f"`when` refers to '{ref}', not an earlier step")
        if step.type in OPTION_TYPES:
            if step.options is None:
                raise _fail(src, where, f"a {step.type} step needs `options`")
            if isinstance(step.options, str) and step.options not in flow.options:
                raise _fail(src, where, f"unknown options list '{step.options}'")
            if not flow.options_for(step):
                raise _fail(src, where, "`options` is empty")
        elif step.options is not None:
            raise _fail(src, where, f"a {step.type} step takes no `options`")
        if step.type in REFERENCE_TYPES and not step.save and (
                not step.bind or step.bind not in spec.records):
            raise _fail(src, where, f"a {step.type} step needs `bind` naming a record")
        if step.bind and step.bind not in spec.records:
            raise _fail(src, where, f"`bind: {step.bind}` is not a record")
        if step.save:
            _check_save(step.save, where)
        if step.save_currency:
            if step.type != "money":
                raise _fail(src, where, "`save_currency` only goes with a money step")
            _check_save(step.save_currency, where)
        if step.low >= step.high:
            raise _fail(src, where, "`low` must be below `high`")
        if step.react:
            if step.type == "yes_no":
                allowed = {"yes", "no"}
            elif step.type in OPTION_TYPES:
                allowed = {o.value for o in flow.options_for(step)}
            else:
                raise _fail(src, where, "`react` needs a choice, multi-choice or yes/no step")
            for value, texts in step.react.items():
                if value not in allowed:
                    raise _fail(src, where, f"`react` names '{value}', not one of the options")
                _check_texts(src, where, f"react.{value}", texts, langs)
        for rule in ("not_before", "not_after"):
            names = date_bounds(getattr(step, rule))
            if names and step.type != "date":
                raise _fail(src, where, f"`{rule}` only goes with a date step")
            for name in names:
                if name == "now":
                    continue
                if "." in name:  # a fact of the record the flow is about
                    if name.split(".")[0] not in (*spec.uses, "invoice"):
                        raise _fail(src, where, f"`{rule}: {name}` is not a fact this flow "
                                                "uses (`uses:`)")
                    continue
                if name not in scope or dates.get(name) != "date":
                    raise _fail(src, where, f"`{rule}: {name}` is not an earlier date step")
        if (step.max_fact or step.currency_fact) and step.type != "money":
            raise _fail(src, where, "`max_fact` / `currency_fact` only go with a money step")
        if step.audit is not None:
            later = [s.id for s in flow.all_steps()]
            if not step.save or step.save.count(".") != 1 or \
                    step.save.split(".")[0] not in spec.uses:
                raise _fail(src, where, "`audit` needs a step that saves a column of a record "
                                        "the flow `uses` (its stored value is the fact)")
            if step.audit not in later or later.index(step.audit) <= later.index(step.id):
                raise _fail(src, where, f"`audit: {step.audit}` is not a later step")
        if step.unique and (step.type != "text" or not step.save):
            raise _fail(src, where, "`unique` needs a text step that saves")
        if step.each and (step.type != "multi_choice" or not step.save):
            raise _fail(src, where, "`each` needs a multi-choice step that saves")
        if step.type in REFERENCE_TYPES and step.save and step.type != "account" \
                and not step.bind and not step.save.endswith("_id"):
            raise _fail(src, where, "a reference that does not `bind` must save to an *_id column")
        dates[step.id] = step.type
        seen.add(step.id)

    def _check_save(target: str, where: str) -> None:
        parts = target.split(".")
        if len(parts) not in (2, 3) or parts[0] not in spec.records:
            raise _fail(src, where,
                        f"`save: {target}` must be <record>.<column> of a declared record")
        table = spec.records[parts[0]].table
        if columns is not None and parts[1] not in columns.get(table, set()):
            raise _fail(src, where, f"`save: {target}`: table '{table}' has no column '{parts[1]}'")

    top_scope: set[str] = set()
    for item in spec.steps:
        if isinstance(item, StepDef):
            check_step(item, top_scope)
            top_scope.add(item.id)
        else:
            where = f"group '{item.group}'"
            if item.record not in spec.records:
                raise _fail(src, where, f"record '{item.record}' is not declared in `records`")
            for name in ("start", "more", "label"):
                _check_texts(src, where, name, getattr(item, name), langs)
            if item.min == 0 and item.start is None:
                raise _fail(src, where, "an optional group (min: 0) needs a `start` question")
            if not item.steps:
                raise _fail(src, where, "a group needs steps")
            if item.when:
                for ref in item.when.steps():
                    if ref not in top_scope:
                        raise _fail(src, where, f"`when` refers to '{ref}', not an earlier step")
            inner = set(top_scope)
            for sub in item.steps:
                check_step(sub, inner)
                inner.add(sub.id)
    if spec.verdict:
        if spec.verdict.record not in spec.records:
            raise _fail(src, "verdict", f"record '{spec.verdict.record}' is not declared")
        for check in spec.verdict.checks:
            if check.step not in top_scope:
                raise _fail(src, "verdict", f"check refers to unknown step '{check.step}'")
            _check_texts(src, f"verdict check '{check.step}'", "reason", check.reason, langs)


@dataclass(frozen=True)
class FlowSet:
    """All flows, by id."""

    flows: Mapping[str, Flow]

    def __getitem__(self, flow_id: str) -> Flow:
        return self.flows[flow_id]

    def __contains__(self, flow_id: object) -> bool:
        return flow_id in self.flows


def _expand_includes(raw: Any, source: str, raws: Mapping[str, Any]) -> Any:
    """`- include: "<flow>:<group>"` reuses another flow's group questions (one copy of them)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("steps"), list):
        return raw
    steps: list[Any] = []
    for item in raw["steps"]:
        if not (isinstance(item, dict) and "include" in item):
            steps.append(item)
            continue
        flow_id, _, group_id = str(item["include"]).partition(":")
        other = next((r for r in raws.values() if isinstance(r, dict) and r.get("id") == flow_id),
                     None)
        group = None
        if other is not None:
            group = next((g for g in other.get("steps", [])
                          if isinstance(g, dict) and g.get("group") == group_id), None)
        if group is None:
            raise FlowError(f"{source}: include '{item['include']}': no such flow group")
        skip = set(item.get("except") or [])
        for step in group.get("steps", []):
            if step.get("id") in skip:
                continue
            copied = dict(step)
            if item.get("optional"):
                copied["optional"] = True
            steps.append(copied)
    return {**raw, "steps": steps}


def load_flows(
    directory: Path = FLOWS_DIR,
    *,
    columns: Mapping[str, set[str]] | None = None,
    langs: tuple[str, ...] = LANGS,
    json_keys: Mapping[tuple[str, str], set[str]] | None = None,
) -> FlowSet:
    """Load and validate every `*.yaml` flow in `directory` (`vocab.yaml` holds option lists)."""
    vocab = load_vocab(directory / "vocab.yaml", langs)
    if "yes_no" not in vocab:
        raise FlowError("vocab.yaml: the option list 'yes_no' is required")
    # more option lists may come in `vocab_<area>.yaml` files (one per area of work)
    for extra in sorted(directory.glob("vocab_*.yaml")):
        for name, opts in load_vocab(extra, langs).items():
            if name in vocab:
                raise FlowError(f"{extra.name}: options '{name}' are defined twice")
            vocab[name] = opts
    raws: dict[str, Any] = {}
    for path in sorted(directory.glob("*.yaml")):
        if path.name != "vocab.yaml" and not path.name.startswith("vocab_"):
            raws[path.name] = _read_yaml(path)
    flows: dict[str, Flow] = {}
    for name, raw in raws.items():
        raw = _expand_includes(raw, name, raws)
        flow = parse_flow(raw, name, vocab, columns=columns, langs=langs, json_keys=json_keys)
        if flow.id in flows:
            raise FlowError(f"{name}: flow id '{flow.id}' is used twice")
        flows[flow.id] = flow
    for flow in flows.values():
        if flow.spec.then and flow.spec.then not in flows:
            raise FlowError(f"{flow.source}: flow: `then: {flow.spec.then}` is not a flow")
    return FlowSet(flows)
