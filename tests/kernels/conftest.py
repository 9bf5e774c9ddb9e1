"""Make `import kernels` mean the project package in these tests, whichever way pytest is started.

pytest puts tests/ on sys.path (for tests/conftest.py), where this folder looks like a namespace package
named `kernels`; the path finder takes that before the editable install's finder. The repository root
first on sys.path makes the real package win (`python -m pytest` gets this from the working directory).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[2])
if REPO not in sys.path:
    sys.path.insert(0, REPO)
