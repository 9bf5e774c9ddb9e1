"""The package layering of DESIGN.md, checked on the import statements themselves.

Pure code at the bottom (crawl, classifiers), the page route above them, Spark only in jobs, torch only in
training and kernels, the command line on top: a module that imports upwards breaks the layering even when
every test still passes, so the rule is checked here rather than left to review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> the project packages it may import (itself always allowed)
ALLOWED: dict[str, set[str]] = {
    "typedconfig": set(),
    "crawl": set(),
    "classifiers": {"crawl"},
    "pipeline": {"crawl", "classifiers"},
    "samplecrawl": {"crawl", "classifiers", "typedconfig"},
    "jobs": {"crawl", "classifiers", "pipeline", "samplecrawl", "typedconfig"},
    "kernels": set(),
    "training": {"kernels", "typedconfig"},
    "mathforge": set(),  # the top floor: anything
}
PROJECT = set(ALLOWED)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(p for p in ALLOWED if p != "mathforge"))
def test_packages_import_only_the_layers_below_them(package):
    wrong = {
        str(path.relative_to(ROOT)): sorted((_imports(path) & PROJECT) - ALLOWED[package] - {package})
        for path in _modules(package)
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_only_jobs_imports_spark():
    spark_users = {
        str(path.relative_to(ROOT))
        for package in PROJECT - {"jobs", "mathforge"}
        for path in _modules(package)
        if "pyspark" in _imports(path)
    }
    assert spark_users == set()


def test_the_checker_sees_real_imports():
    """Guard against a walker that finds nothing: known imports must be seen."""
    assert "pyspark" in _imports(ROOT / "jobs" / "spark.py")
    assert "typedconfig" in _imports(ROOT / "training" / "config.py")
    assert _modules("crawl")
