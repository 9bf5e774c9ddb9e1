"""Shared fixtures: where the real test data lives, and one Spark session for the whole run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Triton kernels decide compiled vs interpreted when first imported: without a GPU, interpret (kernels tests).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


def in_ci() -> bool:
    """CI sets CI=true (GitHub Actions, GitLab, most others); there nothing may be skipped for lack of data."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_shared_data(path: Path) -> Path:
    """`path` if it is there; else skip the test, or, in CI, fail it: a broken CI set-up must not pass by
    skipping everything that needs real data."""
    if not path.is_dir():
        message = f"real test data not found at {path}"
        if in_ci():
            pytest.fail(f"{message} (CI=true: the data is required)", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, read in place (never copied into the repository)."""
    return require_shared_data(SHARED_DATA)


@pytest.fixture(scope="session")
def spark():
    """One local-mode Spark session shared by every test that needs Spark (JVM start-up is the slow part)."""
    from jobs.spark import get_spark

    session = get_spark("local[2]", "mathforge-tests", {"spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()
