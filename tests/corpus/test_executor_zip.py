"""The code zip the driver ships to executors: the packages they import, all importable from the zip alone,
and not the sample crawl's text tables nor the command line."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile

from jobs.spark import EXECUTOR_PACKAGES, build_pyfiles_zip

# What executor-side code imports, from every job: each must load with only the zip and the dependencies.
EXECUTOR_MODULES = (
    "jobs.build_corpus",
    "jobs.dedup_corpus",
    "jobs.train_math_classifier",
    "jobs.classifier_seeds",
    "jobs.corpus_pipeline",
    "pipeline.route",
    "pipeline.filters",
)


def test_the_zip_holds_the_executor_packages_only(tmp_path):
    names = zipfile.ZipFile(build_pyfiles_zip(tmp_path)).namelist()
    packages = {name.split("/", 1)[0] for name in names}
    assert packages == set(EXECUTOR_PACKAGES) == {"crawl", "classifiers", "pipeline", "jobs"}
    assert "pipeline/route.py" in names and "crawl/warc.py" in names and "jobs/build_corpus.py" in names
    assert not [name for name in names if name.startswith(("samplecrawl/", "mathforge/"))]


def test_executor_code_imports_from_the_zip_alone(tmp_path):
    """No repository path and no editable install (`-S` skips the site-packages .pth files that map our
    packages back to the checkout): only the zip, and the dependencies' directory as a plain path."""
    zip_path = build_pyfiles_zip(tmp_path)
    probe = (
        "import importlib, sys\n"
        f"sys.path[:0] = [{str(zip_path)!r}, {sysconfig.get_paths()['purelib']!r}]\n"
        f"for name in {EXECUTOR_MODULES!r}:\n"
        "    assert importlib.import_module(name).__file__.startswith(sys.path[0]), name\n"
        "assert 'samplecrawl' not in sys.modules and 'mathforge' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
