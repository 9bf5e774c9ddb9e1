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
    "classifiers": set(),
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


# training's own floors: part of training -> the parts it may import (itself always allowed). The trainer and the
# objectives sit on top, so nothing below them can grow a second loop or reach into an objective.
TRAINING_FLOORS: dict[str, set[str]] = {
    "rewards": set(),
    "models": {"config", "distributed"},
    "data": {"config", "models", "rewards"},
    "sampling": {"config", "distributed", "models"},
    "serving": {"config", "distributed", "models", "sampling"},
    "evaluation": {"config", "distributed", "models", "data", "rewards", "sampling"},
}


def _training_parts(path: Path) -> set[str]:
    parts: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = node.module.split(".")
            if names[0] == "training":
                parts.add(names[1] if len(names) > 1 else node.names[0].name)
        elif isinstance(node, ast.Import):
            parts.update(a.name.split(".")[1] for a in node.names if a.name.startswith("training."))
    return parts


@pytest.mark.parametrize("part", sorted(TRAINING_FLOORS))
def test_training_parts_import_only_the_floors_below_them(part):
    wrong = {
        str(path.relative_to(ROOT)): sorted(_training_parts(path) - TRAINING_FLOORS[part] - {part})
        for path in _modules(f"training/{part}")
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_the_training_checker_sees_real_imports():
    assert {"models", "data", "rewards", "trainer"} <= _training_parts(
        ROOT / "training" / "objectives" / "grpo.py"
    )
