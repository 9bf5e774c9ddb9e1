"""Distillation end to end on CPU: `distill traces` keeps only verified completions, drops duplicates and resumes
after a crash to the very rows of an uninterrupted run; `train sft` and `train distill --offline` read the
traces as they are; `train distill` gives zero loss and zero gradient for a student distilled from itself (even
when the teacher's padded head rows hold garbage), refuses a teacher with another tokenizer, and resumes
bitwise with on-policy steps, JSD and a cross-entropy term."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import torch
from constant_teacher import constant_teacher_prompts

from training.config import (
    DistillConfig,
    DistillOptions,
    OptimConfig,
    RunConfig,
    SFTConfig,
    SFTDataConfig,
    TracesConfig,
)
from training.metrics import read_metrics
from training.models.tokenizer import check_same_vocabulary, train_tokenizer
from training.objectives.distill import run as distill
from training.objectives.sft import run as sft
from training.objectives.traces import FAIL_ENV, decode_top, write_traces
from training.rewards.verify import Verifier

REPO = Path(__file__).resolve().parents[3]


def _run(out: Path, **options) -> RunConfig:
    return RunConfig(
        out=str(out), **{"max_steps": 2, "log_every": 1, "ckpt_every": 1000, "device": "cpu", **options}
    )


@pytest.fixture(scope="module")
def task(last_number_task, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("distill_task")
    prompts = constant_teacher_prompts(last_number_task, 12)  # the teacher answers the even ones right
    paths = {**last_number_task, "prompts": root / "prompts.jsonl"}
    paths["prompts"].write_text("".join(json.dumps(p) + "\n" for p in prompts))
    return paths


@pytest.fixture(scope="module")
def teacher(constant_teacher) -> Path:
    return constant_teacher


def _traces(teacher: Path, prompts: Path, out: Path, **options) -> TracesConfig:
    settings = {"samples": 3, "max_new_tokens": 24, "temperature": 1.0, "top_p": 1.0, "chunk_prompts": 4,
                "batch_size": 2, "top_k_logprobs": 8, "device": "cpu", "verify_workers": 1, **options}  # fmt: skip
    return TracesConfig(teacher=str(teacher), prompts=str(prompts), out=str(out), **settings)


def _rows(out: Path) -> list[dict]:
    return ds.dataset(out, format="parquet").to_table().to_pylist()


@pytest.fixture(scope="module")
def traces(teacher, task, tmp_path_factory) -> Path:
    """One uninterrupted run through the real entry point (`mathforge distill traces`)."""
    out = tmp_path_factory.mktemp("traces") / "straight"
    args = ["distill", "traces", "--teacher", str(teacher), "--prompts", str(task["prompts"]), "--out", str(out),
            "--samples", "3", "--max-new-tokens", "24", "--temperature", "1.0", "--top-p", "1.0",
            "--chunk-prompts", "4", "--batch-size", "2", "--top-k-logprobs", "8", "--device", "cpu",
            "--verify-workers", "1"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "mathforge.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trace rows for 12 prompts" in proc.stdout
    return out


@pytest.mark.timeout(300)
def test_traces_keep_only_verified_completions_without_duplicates(traces, teacher, task) -> None:
    rows = _rows(traces)
    summary = json.loads((traces / "_summary.json").read_text())["this_run"]
    assert summary["samples"] == 12 * 3
    assert 0 < summary["accepted"] < summary["samples"]  # something was rejected, something kept
    assert rows and len(rows) == summary["kept"] == summary["accepted"] - summary["duplicates"]
    gold = {p["prompt"]: p["answer"] for p in map(json.loads, task["prompts"].open())}
    assert all(gold[r["prompt"]] == r["answer"] == "42" for r in rows)  # only the answerable prompts
    with Verifier(workers=1) as verifier:  # an independent check of every kept completion
        verdicts = verifier.verify_batch([r["completion"] for r in rows], [r["answer"] for r in rows])
    assert all(v.correct is True for v in verdicts)
    assert len({(r["prompt"], r["completion"]) for r in rows}) == len(rows)
    first = rows[0]
    assert first["reward"] == 1.0 and first["finish"] == "stop" and first["teacher"] == str(teacher)
    ids, values = decode_top(first)
    assert ids.shape == values.shape == (len(first["completion_ids"]), 8)
    assert (values[:, :-1] >= values[:, 1:]).all()  # sorted, most likely first
    assert all(ids[j, 0] == t for j, t in enumerate(first["completion_ids"]) if values[j, 0] > -0.01)


@pytest.mark.timeout(300)
def test_a_crashed_run_resumes_to_the_rows_of_an_uninterrupted_one(
    traces, teacher, task, tmp_path, monkeypatch
) -> None:
    out = tmp_path / "crashed"
    monkeypatch.setenv(FAIL_ENV, "1")  # commit chunk 0, then die with chunk 1 written but not committed
    with pytest.raises(RuntimeError, match=FAIL_ENV):
        write_traces(_traces(teacher, task["prompts"], out))
    assert sorted(p.name for p in out.glob("part-*")) == ["part-00000.parquet"]
    assert list(out.glob(".part-00001.parquet.tmp"))  # the half-done chunk never looks finished
    monkeypatch.delenv(FAIL_ENV)
    summary = write_traces(_traces(teacher, task["prompts"], out))
    assert summary["chunks_resumed"] == 1 and summary["chunks"] == 3
    assert _rows(out) == _rows(traces)
    assert not list(out.glob(".part-*"))
    with pytest.raises(ValueError, match="another run"):
        write_traces(_traces(teacher, task["prompts"], out, samples=4))


@pytest.mark.timeout(300)
def test_keep_best_keeps_one_completion_per_prompt(teacher, task, tmp_path) -> None:
    write_traces(_traces(teacher, task["prompts"], tmp_path / "best", keep="best", samples=4, temperature=1.5,
                         top_k_logprobs=0))  # fmt: skip
    rows = _rows(tmp_path / "best")
    assert rows and len({r["prompt"] for r in rows}) == len(rows)
    assert all(r["teacher_top_k"] == 0 and r["teacher_top_ids"] is None for r in rows)


@pytest.mark.timeout(300)
def test_sft_and_offline_distillation_read_the_traces_as_they_are(traces, init_model, tmp_path) -> None:
    data = SFTDataConfig(data=str(traces), init=str(init_model), template="plain", seq_len=128, batch_size=2)
    summary = sft(SFTConfig(run=_run(tmp_path / "sft"), sft=data))
    assert summary["step"] == 2 and summary["last"]["loss"] > 0
    offline = distill(
        DistillConfig(run=_run(tmp_path / "offline"), data=data, distill=DistillOptions(offline=True))
    )
    records = read_metrics(tmp_path / "offline" / "metrics.jsonl")
    assert offline["step"] == 2 and all(r["divergence"] > 0 and r["loss"] == r["divergence"] for r in records)
    with pytest.raises(ValueError, match="temperature"):
        distill(DistillConfig(run=_run(tmp_path / "hot"), data=data, distill=DistillOptions(offline=True, temperature=2.0)))  # fmt: skip


def _padded_copy(model_dir: Path, out: Path, extra_rows: int, fill: float) -> Path:
    """The model with `extra_rows` more (padding) rows in its embedding and head, filled with `fill`."""
    from training.models.hf import save_model_dir
    from training.models.model_io import load_model
    from training.models.transformer import Transformer

    loaded = load_model(model_dir)
    cfg = dataclasses.replace(loaded.model.cfg, vocab_size=loaded.model.cfg.vocab_size + extra_rows)
    bigger = Transformer(cfg)
    state = loaded.model.state_dict()
    with torch.no_grad():
        for name, param in bigger.named_parameters():
            if name in ("embed.weight", "head.weight"):
                param.fill_(fill)
                param[: state[name].shape[0]] = state[name]
            else:
                param.copy_(state[name])
    return save_model_dir(bigger, loaded.tokenizer_path, out, {})


@pytest.mark.timeout(300)
def test_a_student_distilled_from_itself_has_zero_loss_and_gradient(init_model, task, tmp_path) -> None:
    """Also with 64 padded head rows of garbage in the teacher: they are outside every distribution."""
    teacher = _padded_copy(init_model, tmp_path / "padded", extra_rows=64, fill=30.0)
    for loss in ("forward_kl", "jsd"):
        cfg = DistillConfig(
            run=_run(tmp_path / loss, max_steps=1),
            data=SFTDataConfig(
                data=str(task["train"]), init=str(init_model), template="plain", seq_len=128, batch_size=2
            ),
            distill=DistillOptions(teacher=str(teacher), loss=loss),
        )
        distill(cfg)
        (record,) = read_metrics(tmp_path / loss / "metrics.jsonl")
        assert abs(record["divergence"]) < 1e-6 and record["grad_norm"] < 1e-5, record
        assert record["distilled_tokens"] > 10


def test_a_teacher_with_another_vocabulary_is_refused(init_model, corpus_texts, task, tmp_path) -> None:
    from training.models.hf import save_model_dir
    from training.models.model_io import load_model

    same_size = train_tokenizer([t.upper() for t in corpus_texts], vocab_size=512)
    own = load_model(init_model).tokenizer
    assert same_size.get_vocab_size() == own.get_vocab_size()  # equal sizes: not enough
    with pytest.raises(ValueError, match="tokenizers differ"):
        check_same_vocabulary(same_size, own)
    check_same_vocabulary(own, own)
    same_size.save(str(tmp_path / "tokenizer.json"))
    other = save_model_dir(load_model(init_model).model, tmp_path / "tokenizer.json", tmp_path / "other", {})
    cfg = DistillConfig(
        run=_run(tmp_path / "run"),
        data=SFTDataConfig(data=str(task["train"]), init=str(init_model), template="plain", seq_len=128),
        distill=DistillOptions(teacher=str(other)),
    )
    with pytest.raises(ValueError, match="only in the teacher's"):
        distill(cfg)


@pytest.mark.timeout(300)
def test_on_policy_jsd_with_cross_entropy_resumes_bitwise(teacher, init_model, task, tmp_path) -> None:
    def config(out: Path, **run) -> DistillConfig:
        return DistillConfig(
            run=_run(out, max_steps=4, seed=3, **run),
            data=SFTDataConfig(
                data=str(task["train"]), init=str(init_model), template="plain", seq_len=128, batch_size=2
            ),
            distill=DistillOptions(
                teacher=str(teacher),
                loss="jsd",
                beta=0.3,
                temperature=0.9,
                lmbda=0.5,
                ce_weight=0.5,
                max_new_tokens=12,
            ),
            optim=OptimConfig(lr=1e-2, warmup_frac=0.0, grad_accum=2),
        )

    distill(config(tmp_path / "straight"))
    distill(config(tmp_path / "cut", stop_at=2, ckpt_every=2))
    distill(config(tmp_path / "cut", resume=True, ckpt_every=2))
    volatile = {"tokens_per_s", "mfu"}
    straight, resumed = (
        [
            {k: v for k, v in r.items() if k not in volatile}
            for r in read_metrics(tmp_path / d / "metrics.jsonl")
        ]
        for d in ("straight", "cut")
    )
    assert straight == resumed
    drawn = [random.Random(3 * 1_000_003 + step).random() < 0.5 for step in range(4)]
    assert [r["on_policy"] for r in straight] == [float(d) for d in drawn]
    for r in straight:
        assert r["loss"] == pytest.approx(r["divergence"] + 0.5 * r["ce"], rel=1e-6)


@pytest.mark.timeout(300)
def test_distill_under_torchrun_fsdp_keeps_both_ranks_identical(teacher, init_model, task, tmp_path) -> None:
    """Two ranks, FSDP2, one on-policy step among three (the student samples through the sharded wrapper,
    the teacher, sharded too, scores): the ranks hold the same weights after every step, on different data,
    and the divergences are those of a DDP run with a full teacher on every rank."""
    from torchrun_launch import torchrun

    def args(out: Path, parallel: str) -> list[str]:
        return ["-m", "training.objectives.distill", "--teacher", str(teacher), "--data", str(task["train"]), "--init",
                str(init_model), "--out", str(out), "--max-steps", "3", "--seed", "3", "--lmbda", "0.5",
                "--max-new-tokens", "8", "--loss", "reverse_kl", "--template", "plain", "--seq-len", "128",
                "--batch-size", "2", "--grad-accum", "2", "--parallel", parallel, "--device", "cpu",
                "--log-every", "1", "--rank-logs", "--lr", "1e-2"]  # fmt: skip

    torchrun(args(tmp_path / "run", "fsdp"))
    torchrun(args(tmp_path / "ddp", "ddp"))
    fsdp, ddp = (read_metrics(tmp_path / d / "metrics.jsonl") for d in ("run", "ddp"))
    for a, b in zip(fsdp, ddp, strict=True):
        assert a["divergence"] == pytest.approx(b["divergence"], rel=1e-4)
    rank0, rank1 = (read_metrics(tmp_path / "run" / f"rank{r}.jsonl") for r in (0, 1))
    assert [r["step"] for r in rank0] == [1, 2, 3]
    assert [r["param_digest"] for r in rank0] == [r["param_digest"] for r in rank1]
    assert len({r["param_digest"] for r in rank0}) == 3
    assert all(a["batch_digest"] != b["batch_digest"] for a, b in zip(rank0, rank1, strict=True))
    assert [r["on_policy"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [1.0, 0.0, 0.0]
