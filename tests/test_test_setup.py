"""The suite's own rules: in CI nothing is skipped for lack of data or of the project's own modules."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest


def _top_conftest():
    """tests/conftest.py itself: `from conftest import` would find whichever conftest pytest imported last."""
    spec = importlib.util.spec_from_file_location(
        "mathforge_tests_conftest", Path(__file__).with_name("conftest.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_CONFTEST = _top_conftest()
REPO, require_shared_data = _CONFTEST.REPO, _CONFTEST.require_shared_data

# Third-party packages tests may still import optionally; the project's own never.
OWN_PACKAGES = {"crawl", "classifiers", "jobs", "training", "kernels", "mathforge", "bench"}


@pytest.mark.parametrize("ci", ["true", "1"])
def test_missing_shared_data_fails_in_ci(monkeypatch, tmp_path, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises((pytest.fail.Exception, pytest.skip.Exception)) as outcome:
        require_shared_data(tmp_path / "no-shared" / "data")
    assert outcome.type is pytest.fail.Exception and "CI=true" in str(outcome.value)  # a skip would not do


def test_missing_shared_data_skips_outside_ci(monkeypatch, tmp_path):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises((pytest.fail.Exception, pytest.skip.Exception)) as outcome:
        require_shared_data(tmp_path / "no-shared" / "data")
    assert outcome.type is pytest.skip.Exception
    assert require_shared_data(tmp_path) == tmp_path


def _importorskips(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "importorskip"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def test_no_test_skips_when_one_of_our_own_modules_fails_to_import():
    """`pytest.importorskip("training.models.transformer")` would turn a broken module into a skip; import it
    plainly."""
    offenders = [
        f"{path.relative_to(REPO)}:{line} importorskip({name!r})"
        for path in sorted((REPO / "tests").rglob("*.py"))
        for line, name in _importorskips(path)
        if name.split(".")[0] in OWN_PACKAGES
    ]
    assert offenders == []
