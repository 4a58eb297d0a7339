"""Rendering: one jinja2 Environment, message catalogs per language, templates for messages.

Everything renders with autoescaping, so user text can never become markup, and user text is
only ever passed *into* templates as data — never compiled as a template itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, TemplateError
from markupsafe import Markup

from dialogs.errors import FlowError

LOCALES_DIR = Path(__file__).with_name("locales")
TEMPLATES_DIR = Path(__file__).with_name("templates")
# after a label in templates ("Owner: Li Lei" / "负责人：李雷"): Chinese takes the full-width mark
COLONS = {"zh": "："}


def load_catalogs(directory: Path = LOCALES_DIR) -> dict[str, dict[str, str]]:
    """`locales/<lang>/*.yaml` merged into one flat mapping per language; keys must agree."""
    catalogs: dict[str, dict[str, str]] = {}
    for lang_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
        merged: dict[str, str] = {}
        for path in sorted(lang_dir.glob("*.yaml")):
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as exc:
                where = f"locales/{lang_dir.name}/{path.name}"
                raise FlowError(f"{where}: not valid YAML: {exc}") from exc
            if not isinstance(data, dict):
                raise FlowError(f"locales/{lang_dir.name}/{path.name}: expected key: text pairs")
            for key, value in data.items():
                if key in merged:
                    raise FlowError(f"locales/{lang_dir.name}/{path.name}: '{key}' defined twice")
                merged[str(key)] = str(value)
        catalogs[lang_dir.name] = merged
    if "en" not in catalogs:
        raise FlowError("locales/en is missing: English is the fallback language")
    reference = set(catalogs["en"])
    for lang, catalog in catalogs.items():
        missing = sorted(reference - set(catalog))
        if missing:
            raise FlowError(f"locales/{lang}: missing {len(missing)} keys, e.g. {missing[:5]}")
    return catalogs


class Renderer:
    """Renders catalog texts, flow texts and message templates to escaped neutral markup."""

    def __init__(
        self,
        catalogs: Mapping[str, Mapping[str, str]] | None = None,
        templates_dir: Path = TEMPLATES_DIR,
    ) -> None:
        self.catalogs = catalogs if catalogs is not None else load_catalogs()
        self.env = Environment(
            loader=FileSystemLoader(str(templates_dir)),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=StrictUndefined,
            keep_trailing_newline=False,
        )
        self._compiled: dict[str, Template] = {}
        self._names: dict[str, str] | None = None
        self._compile = lru_cache(maxsize=4096)(self._compile_uncached)
        for lang, catalog in self.catalogs.items():
            for key, source in catalog.items():
                try:
                    self._compile(source)
                except TemplateError as exc:
                    raise FlowError(f"locales/{lang}: '{key}': {exc}") from exc

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.catalogs)

    def language_named(self, word: str) -> str | None:
        """The language `word` names: its code (`zh`, also `zh-CN`, `zh_Hans`) or one of its
        names in any catalog (`lang.name.zh`: Chinese, 中文, 汉语 …); None if none."""
        if self._names is None:
            names: dict[str, str] = {}
            for catalog in self.catalogs.values():
                for code in self.catalogs:
                    for name in catalog.get(f"lang.name.{code}", "").split("|"):
                        if name.strip():
                            names.setdefault(name.strip().casefold(), code)
            self._names = names
        key = word.strip().casefold()
        code = re.split(r"[-_]", key, maxsplit=1)[0]
        if code in self.catalogs:
            return code
        return self._names.get(key)

    def _compile_uncached(self, source: str) -> Template:
        return self.env.from_string(source)

    def check(self, source: str) -> None:
        """Compile a trusted text (from a flow file) now, so errors surface at start-up."""
        self._compile(source)

    def text(self, lang: str, key: str, /, **params: Any) -> Markup:
        """A catalog message in `lang` (falling back to English). `lang` and `key` are
        positional-only, so a message may itself take a `key` or `lang` parameter."""
        catalog = self.catalogs.get(lang) or self.catalogs["en"]
        source = catalog.get(key)
        if source is None:
            source = self.catalogs["en"][key]
        return self._render(source, params)

    def _render(self, source: str, params: dict[str, Any]) -> Markup:
        if "{" not in source:  # a trusted text with nothing to fill in: no template run
            return Markup(source.strip())
        return Markup(self._compile(source).render(**params).strip())

    @staticmethod
    def source(texts: Mapping[str, str], lang: str) -> str:
        """Which of a flow file's per-language texts serves `lang`."""
        return texts.get(lang) or texts.get("en") or next(iter(texts.values()))

    def pick(self, texts: Mapping[str, str], lang: str, **params: Any) -> Markup:
        """One of a flow file's per-language texts, rendered."""
        return self._render(self.source(texts, lang), params)

    def template(self, name: str, lang: str, **params: Any) -> Markup:
        tpl = self._compiled.get(name)
        if tpl is None:
            tpl = self._compiled[name] = self.env.get_template(name)
        return Markup(tpl.render(lang=lang, t=lambda key, **kw: self.text(lang, key, **kw),
                                 colon=COLONS.get(lang, ": "), **params).strip())
