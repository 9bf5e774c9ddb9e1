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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, read in place (never copied into the repository)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def spark():
    """One local-mode Spark session shared by every test that needs Spark (JVM start-up is the slow part)."""
    from jobs.spark import get_spark

    session = get_spark("local[2]", "mathforge-tests", {"spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()
