"""Session fixtures: a small Parquet corpus of real-looking math text and a tokenizer trained on it, tiny models
built from them, and a teacher whose every answer is known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from constant_teacher import CONSTANT_ANSWER
from training_corpus import write_corpus

from training.data.packing import index_corpus, iter_texts
from training.models.tokenizer import train_tokenizer


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models run several times faster on one thread, above all on a shared, busy machine."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root)
    return root


@pytest.fixture(scope="session")
def corpus_texts(corpus_dir: Path) -> list[str]:
    return list(iter_texts(index_corpus(corpus_dir), 10**9))


@pytest.fixture(scope="session")
def tokenizer(corpus_texts: list[str]):
    return train_tokenizer(corpus_texts, vocab_size=512)


@pytest.fixture(scope="session")
def pattern_model():
    """A tiny model with two MTP depths trained on a repeated random sequence, and its loss history."""
    import torch
    from training_corpus import repeated_pattern_batch

    from training.config import model_config
    from training.models.transformer import Transformer

    generator = torch.Generator().manual_seed(0)
    pattern = torch.randperm(60, generator=generator)[:11] + 4
    model = Transformer(model_config("tiny", 64, max_seq_len=128, mtp_depth=2), seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    history = []
    for _ in range(120):
        ids, targets, docs = repeated_pattern_batch(pattern, 8, 48, generator)
        out = model(ids, targets, docs, mtp_weight=1.0)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        history.append([out.main_loss.item(), *(loss.item() for loss in out.mtp_losses)])
    return model.eval(), pattern, history


@pytest.fixture(scope="session")
def init_model(tokenizer, tmp_path_factory) -> Path:
    """A tiny random model (with one MTP depth) and the session tokenizer, as a mathforge model directory."""
    from training.config import model_config
    from training.models.hf import save_model_dir
    from training.models.transformer import Transformer

    root = tmp_path_factory.mktemp("init")
    tokenizer.save(str(root / "tokenizer.json"))
    model = Transformer(
        model_config("tiny", tokenizer.get_vocab_size(), max_seq_len=256, mtp_depth=1), seed=1
    )
    return save_model_dir(model, root / "tokenizer.json", root / "model", {})


@pytest.fixture(scope="session")
def tied_qwen2(tmp_path_factory) -> Path:
    """A tiny random transformers Qwen2 with tied embeddings and a padded vocabulary (Qwen2.5's shape), imported
    with `mathforge model import`: the model of the FSDP2 exact-resume tests."""
    from hf_fixtures import CHATML, hf_model, save_hf

    from mathforge.cli import main as mathforge

    root = tmp_path_factory.mktemp("tied_qwen2")
    save_hf(hf_model("qwen2", tied=True), root / "hf", sharded=False, chat_template=CHATML)
    assert mathforge(["model", "import", "--from", str(root / "hf"), "--out", str(root / "model")]) == 0
    return root / "model"


@pytest.fixture(scope="session")
def last_number_task(tmp_path_factory) -> dict[str, Path]:
    """The synthetic last-number task (48 training problems) the constant teacher is trained on."""
    from training.data.synthetic import write_last_number_task

    return write_last_number_task(tmp_path_factory.mktemp("last_number"), n_train=48, n_test=4, seed=5)


@pytest.fixture(scope="session")
def constant_teacher(init_model, last_number_task, tmp_path_factory) -> Path:
    """The init model fine-tuned to answer every question with 42 (a few seconds of SFT): a teacher whose
    every completion is known, for traces, distillation and the generation engines."""
    from training.config import OptimConfig, RunConfig, SFTConfig, SFTDataConfig
    from training.objectives.sft import run as sft

    root = tmp_path_factory.mktemp("constant_teacher")
    rows = [json.loads(line) for line in last_number_task["train"].open()]
    data = root / "constant.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": r["prompt"], "completion": CONSTANT_ANSWER}) + "\n" for r in rows)
    )
    sft(
        SFTConfig(
            run=RunConfig(out=str(root / "run"), max_steps=40, log_every=40, ckpt_every=1000, device="cpu"),
            sft=SFTDataConfig(
                data=str(data), init=str(init_model), template="plain", seq_len=128, batch_size=4
            ),
            optim=OptimConfig(lr=1e-2, warmup_frac=0.1),
        )
    )
    return root / "run"
