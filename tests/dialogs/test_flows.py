"""Flow files are validated when loaded: a broken one fails naming the file, step and problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dialogs.errors import FlowError
from dialogs.flow import FLOWS_DIR, load_flows
from dialogs.render import Renderer, load_catalogs
from store.records import table_columns

GOOD = """
id: demo
title: {en: "demo", zh: "示例"}
intro: {en: "Hi", zh: "你好"}
records:
  account: {table: accounts}
steps:
  - id: name
    type: text
    save: account.name
    ask: {en: "Name?", zh: "名称？"}
  - id: kind
    type: choice
    options: industry
    save: account.industry
    ask: {en: "Kind?", zh: "类型？"}
"""


def _write(tmp_path: Path, text: str) -> Path:
    shutil.copy(FLOWS_DIR / "vocab.yaml", tmp_path / "vocab.yaml")
    (tmp_path / "demo.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def test_shipped_flows_load_and_every_save_names_a_real_column() -> None:
    flows = load_flows(columns=table_columns())
    assert {"intake", "qualify", "contact"} <= set(flows.flows)
    assert flows["intake"].spec.then == "qualify"


def test_a_good_flow_loads(tmp_path: Path) -> None:
    flows = load_flows(_write(tmp_path, GOOD), columns=table_columns())
    assert flows["demo"].step("kind").type == "choice"


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (GOOD.replace("type: choice", "type: choise"), "demo.yaml: step 'kind': type"),
        (GOOD.replace("account.industry", "account.industri"),
         "demo.yaml: step 'kind': `save: account.industri`: table 'accounts' has no column"),
        (GOOD.replace("options: industry", "options: industries"),
         "demo.yaml: step 'kind': unknown options list 'industries'"),
        (GOOD.replace('zh: "类型？"', 'zh: ""'), "demo.yaml: step 'kind': `ask` has no text in zh"),
        (GOOD.replace("    ask: {en: \"Kind?\"", "    when: {step: later, equals: 1}\n"
                      "    ask: {en: \"Kind?\""),
         "demo.yaml: step 'kind': `when` refers to 'later', not an earlier step"),
        (GOOD.replace("id: kind", "id: name"), "demo.yaml: step 'name': duplicate step id"),
        (GOOD.replace("steps:", "steps: [oops\n"), "demo.yaml: not valid YAML"),
        (GOOD.replace("    save: account.name\n", "    save: account.name\n    colour: red\n"),
         "demo.yaml: step 'name': colour: Extra inputs are not permitted"),
        (GOOD + "then: nowhere\n", "demo.yaml: flow: `then: nowhere` is not a flow"),
    ],
)
def test_a_broken_flow_fails_naming_file_step_and_problem(
    tmp_path: Path, broken: str, message: str
) -> None:
    with pytest.raises(FlowError) as caught:
        load_flows(_write(tmp_path, broken), columns=table_columns())
    assert message in str(caught.value)


def test_catalogs_have_the_same_keys_in_every_language() -> None:
    catalogs = load_catalogs()
    assert set(catalogs) >= {"en", "zh"}
    assert set(catalogs["en"]) == set(catalogs["zh"])


def test_a_catalog_missing_a_key_fails(tmp_path: Path) -> None:
    for lang in ("en", "zh"):
        (tmp_path / lang).mkdir()
    (tmp_path / "en" / "a.yaml").write_text('hello: "Hello"\nbye: "Bye"\n', encoding="utf-8")
    (tmp_path / "zh" / "a.yaml").write_text('hello: "你好"\n', encoding="utf-8")
    with pytest.raises(FlowError, match=r"locales/zh: missing 1 keys, e.g. \['bye'\]"):
        load_catalogs(tmp_path)


def test_a_catalog_text_with_a_template_error_fails_at_start(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "a.yaml").write_text('hello: "Hello {{ name"\n', encoding="utf-8")
    with pytest.raises(FlowError, match="locales/en: 'hello'"):
        Renderer(load_catalogs(tmp_path))


def test_cli_refuses_to_start_with_a_broken_flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from typer.testing import CliRunner

    import bot.app
    from bot.cli import cli

    broken = _write(tmp_path, GOOD.replace("type: choice", "type: choise"))
    real = bot.app.load_flows
    monkeypatch.setattr(bot.app, "load_flows", lambda **kw: real(broken, **kw))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["chat"], input="")
    assert result.exit_code == 2
    assert "demo.yaml: step 'kind'" in result.output
