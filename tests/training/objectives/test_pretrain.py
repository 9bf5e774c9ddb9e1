"""The pretraining loop end to end on CPU: loss goes down, logs and artefacts, exact resume, the CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from training.cli import register
from training.config import DataConfig, OptimConfig, PretrainConfig, RunConfig
from training.metrics import read_metrics
from training.models.checkpoint import latest_checkpoint, load_checkpoint
from training.objectives.pretrain import run


def _config(data: Path, out: Path, **run_overrides) -> PretrainConfig:
    run_options = {"max_steps": 30, "log_every": 5, "ckpt_every": 1000, "device": "cpu", **run_overrides}
    return PretrainConfig(
        run=RunConfig(out=str(out), **run_options),
        data=DataConfig(data=str(data), vocab_size=512, seq_len=64, batch_size=8),
        optim=OptimConfig(lr=3e-3),
    )


def _assert_loss_goes_down(out: Path) -> list[dict]:
    records = read_metrics(out / "metrics.jsonl")
    first, last = records[0], records[-1]
    assert last["loss"] < first["loss"] - 1.0, (first, last)
    assert last["main_loss"] < first["main_loss"] and last["mtp_loss_1"] < first["mtp_loss_1"]
    return records


@pytest.mark.timeout(120)
def test_tiny_model_learns_the_corpus_and_leaves_its_artefacts(corpus_dir, tmp_path) -> None:
    out = tmp_path / "run"
    summary = run(_config(corpus_dir, out))
    assert summary["step"] == 30
    records = _assert_loss_goes_down(out)
    assert [r["step"] for r in records] == [5, 10, 15, 20, 25, 30]
    assert {"loss", "main_loss", "mtp_loss_1", "tokens_per_s", "mfu", "lr", "mtp_weight"} <= set(records[0])
    assert records[0]["mtp_weight"] == 0.3 and records[-1]["mtp_weight"] == 0.1  # λ schedule switches at 70%
    assert (out / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert (out / "tokenizer.json").is_file()
    ckpt = latest_checkpoint(out / "checkpoints")
    assert {p.name for p in ckpt.iterdir()} == {
        "model.safetensors",
        "optimizer.safetensors",
        "rng.safetensors",
        "meta.json",
    }
    meta = load_checkpoint(ckpt).meta
    assert meta["data"][0]["shard"].endswith(".parquet") and meta["world_size"] == 1


@pytest.mark.timeout(120)
def test_loss_goes_down_on_real_math_text(shared_data, tmp_path) -> None:
    rows = [json.loads(line) for line in (shared_data / "math_benchmarks" / "gsm8k_test.jsonl").open()][:400]
    texts = [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in rows]
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"text": texts}), tmp_path / "data" / "part-0.parquet", row_group_size=100)
    run(_config(tmp_path / "data", tmp_path / "run"))
    _assert_loss_goes_down(tmp_path / "run")


@pytest.mark.timeout(180)
def test_resume_reproduces_an_uninterrupted_run_bit_for_bit(corpus_dir, tmp_path, monkeypatch) -> None:
    from wandb_files import read_offline_runs

    monkeypatch.setenv("WANDB_MODE", "offline")  # the interrupted run also logs to W&B, offline
    monkeypatch.setenv("WANDB_SILENT", "true")
    options = {"max_steps": 8, "log_every": 1, "ckpt_every": 3}
    tracked = {**options, "log_to": ("tensorboard", "wandb")}
    run(_config(corpus_dir, tmp_path / "straight", **options))
    run(_config(corpus_dir, tmp_path / "interrupted", stop_at=4, **tracked))
    assert latest_checkpoint(tmp_path / "interrupted" / "checkpoints").name == "step_00000004"
    run(_config(corpus_dir, tmp_path / "interrupted", resume=True, **tracked))
    straight = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    resumed = read_metrics(tmp_path / "interrupted" / "metrics.jsonl")
    assert [r["step"] for r in resumed] == list(range(1, 9))
    keys = ("loss", "main_loss", "mtp_loss_1", "grad_norm", "lr", "tokens")
    for a, b in zip(straight, resumed, strict=True):
        assert {k: a[k] for k in keys} == {k: b[k] for k in keys}, a["step"]
    # W&B saw one run (the resume reopened its id) whose last word on each step is the JSONL log's
    first, second = read_offline_runs(tmp_path / "interrupted")
    assert first["id"] == second["id"] and first["config"]["objective"] == "pretrain"
    seen = {row["step"]: row["loss"] for row in first["history"] + second["history"]}
    assert seen == {r["step"]: r["loss"] for r in resumed}


def test_gradient_accumulation_sees_the_same_rows_as_one_big_batch(corpus_dir, tmp_path) -> None:
    big = _config(corpus_dir, tmp_path / "big", max_steps=3, log_every=1)
    accumulated = _config(corpus_dir, tmp_path / "accumulated", max_steps=3, log_every=1)
    accumulated.data.batch_size, accumulated.optim.grad_accum = 4, 2
    run(big)
    run(accumulated)
    one, two = (
        read_metrics(tmp_path / "big" / "metrics.jsonl"),
        read_metrics(tmp_path / "accumulated" / "metrics.jsonl"),
    )
    assert [r["tokens"] for r in one] == [r["tokens"] for r in two]
    # mean of two half-batch means vs one mean: equal up to how ignored targets split between the halves
    assert two[0]["loss"] == pytest.approx(one[0]["loss"], rel=1e-3)
    assert two[0]["grad_norm"] == pytest.approx(one[0]["grad_norm"], rel=1e-2)
    assert two[-1]["loss"] == pytest.approx(one[-1]["loss"], rel=1e-2)


def test_an_existing_run_is_not_overwritten_without_resume(corpus_dir, tmp_path) -> None:
    run(_config(corpus_dir, tmp_path / "run", max_steps=1))
    with pytest.raises(FileExistsError, match="--resume"):
        run(_config(corpus_dir, tmp_path / "run", max_steps=1))


def test_empty_corpus_fails_fast_with_a_clear_error(tmp_path) -> None:
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "data" / "part-0.parquet")
    with pytest.raises(ValueError, match="no rows"):
        run(_config(tmp_path / "data", tmp_path / "run"))


def test_cli_pretrain_command_trains(corpus_dir, tmp_path, capsys) -> None:
    parser = argparse.ArgumentParser(prog="mathforge")
    register(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "cli_run"
    command = f"train pretrain --data {corpus_dir} --out {out} --preset tiny --max-steps 3 --seq-len 32"
    args = parser.parse_args(
        [
            *command.split(),
            *["--batch-size", "2", "--vocab-size", "400", "--device", "cpu", "--log-every", "1"],
        ]
    )
    assert args.handler(args) == 0
    assert "trained to step 3" in capsys.readouterr().out
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3]
    resume = parser.parse_args(
        ["train", "pretrain", "--data", str(corpus_dir), "--out", str(out), "--resume"]
    )
    assert resume.resume is True and resume.preset == "tiny"
