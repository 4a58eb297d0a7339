"""Every catalog text is the neutral markup the front ends understand: only <b>, <i>, <code>
tags, and a literal `<`, `>` or `&` written as an entity (Telegram rejects anything else)."""

from __future__ import annotations

import re

import pytest

from dialogs.render import load_catalogs

ALLOWED = re.compile(r"</?(b|i|code)>")
ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+);")
CATALOGS = load_catalogs()


@pytest.mark.parametrize("lang", sorted(CATALOGS))
def test_catalog_texts_use_only_the_neutral_markup(lang: str) -> None:
    bad = []
    for key, text in CATALOGS[lang].items():
        if key.startswith("command."):
            continue  # aliases users type, never shown as markup
        stripped = ENTITY.sub("", ALLOWED.sub("", re.sub(r"\{[{%#].*?[}%#]\}", "", text)))
        if "<" in stripped or ">" in stripped or "&" in stripped:
            bad.append(key)
    assert bad == []
