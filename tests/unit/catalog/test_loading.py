"""TASKS (and --tasks) name the catalog by an import string, module:attribute; every way that can
go wrong is one line naming the setting and the problem."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from factorial_ws import Catalog, cli
from factorial_ws.catalog import CatalogError, import_catalog, load_catalog
from factorial_ws.config import Config, ConfigError

not_a_catalog = 42
nested = type("Nested", (), {"catalog": Catalog()})


def test_unset_is_the_built_in_catalog() -> None:
    assert [entry.name for entry in load_catalog(Config())] == ["factorial"]


def test_the_example_catalog_loads_by_its_import_string() -> None:
    catalog = load_catalog(Config(tasks="examples.wordcount.catalog:catalog"))
    assert [entry.name for entry in catalog] == ["count_words", "slow_count", "explode"]


@pytest.mark.parametrize(
    ("import_string", "problem"),
    [
        ("no_such_module_here:catalog", "cannot import 'no_such_module_here': No module named"),
        (f"{__name__}:missing", f"{__name__!r} has no attribute 'missing'"),
        (f"{__name__}:not_a_catalog", "is a int, not a factorial_ws.Catalog"),
        (f"{__name__}:nested.catalog", "the catalog is empty"),
        ("justamodule", "not an import string 'module:attribute'"),
    ],
)
def test_a_bad_import_string_is_one_line(import_string: str, problem: str) -> None:
    with pytest.raises(CatalogError) as caught:
        import_catalog(import_string)
    message = str(caught.value)
    assert message.startswith(f"TASKS={import_string}: ")
    assert problem in message
    assert "\n" not in message


def test_the_setting_refuses_a_string_without_an_attribute() -> None:
    with pytest.raises(ConfigError, match=r"^TASKS=examples.wordcount: must be an import string"):
        Config(tasks="examples.wordcount")


def test_an_entry_error_at_import_is_named_with_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_catalog.py").write_text(
        "from pydantic import BaseModel\n"
        "from factorial_ws import Catalog\n"
        "class P(BaseModel):\n    pass\n"
        "catalog = Catalog()\n"
        "catalog.add('result', celery_task='t', params=P, queue='q', timeout=1)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(CatalogError) as caught:
        import_catalog("broken_catalog:catalog")
    assert str(caught.value).startswith(
        "TASKS=broken_catalog:catalog: catalog entry 'result': the name is reserved by the protocol"
    )
    sys.modules.pop("broken_catalog", None)


@pytest.mark.parametrize("command", ["serve", "up"])
def test_serve_and_up_refuse_a_bad_catalog_in_one_line_before_starting_anything(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([command, "--tasks", "no_such_module_here:catalog"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("factorial-ws: TASKS=no_such_module_here:catalog: cannot import")
    assert error.count("\n") == 1


def test_the_current_directory_is_importable_as_for_celery_a(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cwd_catalog.py").write_text("from examples.wordcount.catalog import catalog\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert len(import_catalog("cwd_catalog:catalog")) == 3
    sys.modules.pop("cwd_catalog", None)
