"""The quality prompt, the strict reading of answers, the agreement metrics, and `train-quality` (fastText and a
frozen encoder) on annotations whose score the page text determines, so a model that learns anything real ranks
held-out pages in score order and beats a relevance score that only knows "math or not"."""

from __future__ import annotations

import datetime as dt
import json
import pickle
import random
import sys

import pytest

from classifiers.quality import FastTextQualityScorer, cached_quality_scorer, label_of, quality_scorer_for
from classifiers.quality_metrics import (
    agreement,
    average_ranks,
    confusion_matrix,
    f1_at,
    labels_by_rank,
    spearman,
    to_label,
)
from classifiers.quality_prompt import (
    DEFAULT_PROMPT_VERSION,
    QUALITY_PROMPT_V1,
    parse_quality_answer,
    quality_messages,
    truncate_text,
)
from jobs.annotate_quality import ANNOTATIONS_DIR, write_part
from jobs.config import QualityTrainConfig
from jobs.train_quality import is_heldout, train_quality

# -- prompt and parsing ---------------------------------------------------------------------------------------


def test_the_prompt_carries_the_truncated_page_and_the_answer_format():
    (message,) = quality_messages(truncate_text("Let x = 2. " * 100, 30))
    assert message["role"] == "user"
    assert "<extract>\nLet x = 2. Let x = 2. Let x = \n</extract>" in message["content"]
    assert message["content"].startswith(QUALITY_PROMPT_V1.split("{text}")[0])
    assert 'last line of the form "Score: N"' in message["content"]
    with pytest.raises(ValueError, match="unknown quality prompt version"):
        quality_messages("x", "v0")


@pytest.mark.parametrize(
    ("raw", "score", "reason"),
    [
        ("Clear worked examples of integrals.\nScore: 4", 4, "Clear worked examples of integrals."),
        ("No math here.\n\nScore: 0\n\n", 0, "No math here."),
        ("Good tutorial.\n**Score: 5**", 5, "Good tutorial."),
        ("score:3", 3, ""),
        (
            "<think>maybe Score: 1? no</think>A proof, well explained.\nScore: 3",
            3,
            "A proof, well explained.",
        ),
    ],
)
def test_answers_in_the_required_form_are_read(raw, score, reason):
    parsed = parse_quality_answer(raw)
    assert parsed.ok and (parsed.score, parsed.reason, parsed.problem) == (score, reason, None)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "empty answer"),
        (None, "empty answer"),
        ("I would give it a 4 out of 5.", "the last line is not 'Score: N'"),
        ("Score: 4\nIt explains derivatives well.", "the last line is not 'Score: N'"),
        ("Score: 2\nOn reflection:\nScore: 3", "more than one line states a score"),
        ("Score: 3/5", "the last line is not 'Score: N'"),
        ("Score: 3.5", "the last line is not 'Score: N'"),
        ("Score: 7", "score 7 is outside 0-5"),
        ("Score: four", "the last line is not 'Score: N'"),
    ],
)
def test_anything_else_is_unparseable_never_guessed(raw, problem):
    parsed = parse_quality_answer(raw)
    assert not parsed.ok and parsed.score is None and parsed.problem == problem


# -- metrics ----------------------------------------------------------------------------------------------------


def test_agreement_metrics_on_known_values():
    assert average_ranks([10, 20, 20, 5]) == [2, 3.5, 3.5, 1]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [5, 5, 5]) is None
    assert [to_label(v) for v in (-1, 0.49, 0.5, 2.5, 4.6, 9)] == [0, 0, 1, 3, 5, 5]
    assert confusion_matrix([0, 3, 3], [0, 3, 4])[3] == [0, 0, 0, 1, 1, 0]
    assert f1_at([0, 3, 4, 5], [3, 3, 1, 5], 3) == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3}
    )
    # by rank: the lowest half of the values get 0 and the highest half 4, as in the reference histogram
    assert labels_by_rank([0.9, 0.1, 0.5, 0.7], [0, 0, 4, 4]) == [4, 0, 0, 4]
    report = agreement([0, 5], [0.2, 4.9], [0, 5], 3)
    assert report["exact"] == 1.0 and report["f1_at_3"]["f1"] == 1.0 and report["n"] == 2


def test_heldout_split_is_stable_and_near_its_fraction():
    ids = [f"doc{i}" for i in range(2000)]
    held = [is_heldout(i, 0.2, 0) for i in ids]
    assert held == [is_heldout(i, 0.2, 0) for i in ids]
    assert 0.16 < sum(held) / len(ids) < 0.24
    assert held != [is_heldout(i, 0.2, 1) for i in ids]


# -- train-quality on synthetic annotations ---------------------------------------------------------------------

# letters only: the classifier's normalisation folds digits to 0
FILLER = [f"filler{a}{b}" for a in "abcde" for b in "abcdefgh"]
TIERS = {s: [f"tier{'abcdef'[s]}w{j}" for j in "abcdefgh"] for s in range(6)}
VERSION = DEFAULT_PROMPT_VERSION


def page(score: int, rng: random.Random) -> str:
    """Text whose words say its score: mostly filler, a dozen words of its tier, a few of the tier below."""
    words = (
        rng.choices(FILLER, k=40)
        + rng.choices(TIERS[score], k=12)
        + rng.choices(TIERS[max(score - 1, 0)], k=3)
    )
    rng.shuffle(words)
    return " ".join(words)


def annotation(doc_id: str, text: str, score: int | None, math_score: float, version: str = VERSION) -> dict:
    return {
        "id": doc_id, "url": f"https://example.org/{doc_id}", "domain": "example.org", "math_score": math_score,
        "math_bucket": min(int(math_score * 5), 4), "n_chars": len(text), "text": text,
        "status": "ok" if score is not None else "unparseable", "score": score, "reason": "r",
        "raw_answer": "x" if score is None else f"r\nScore: {score}", "problem": None if score is not None else "p",
        "attempts": 1, "finish_reason": "stop", "prompt_version": version, "model": "judge", "temperature": 0.0,
        "top_p": 1.0, "max_tokens": 64, "seed": 1, "annotated_at": dt.datetime.now(dt.UTC),
    }  # fmt: skip


@pytest.fixture(scope="module")
def annotations(tmp_path_factory):
    """600 annotated pages (100 per score) plus 20 unparseable ones; the relevance score knows only whether a
    page is math (score >= 1), not how good it is."""
    rng = random.Random(5)
    rows = []
    for i in range(600):
        score = i % 6
        relevance = rng.uniform(0.0, 0.2) if score == 0 else rng.uniform(0.5, 1.0)
        rows.append(annotation(f"doc{i:04d}", page(score, rng), score, relevance))
    rows += [annotation(f"bad{i}", page(5, rng), None, 0.9) for i in range(20)]
    root = tmp_path_factory.mktemp("annotated")
    write_part(root / ANNOTATIONS_DIR, "part-a-00000.parquet", rows[:300])
    write_part(root / ANNOTATIONS_DIR, "part-a-00001.parquet", rows[300:])
    return root


@pytest.fixture(scope="module")
def fasttext_report(annotations, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "quality.bin"
    return train_quality(
        QualityTrainConfig(annotations=str(annotations), output=str(out), heldout_fraction=0.2)
    ), out


def test_fasttext_quality_model_agrees_with_heldout_annotations_better_than_relevance(fasttext_report):
    report, out = fasttext_report
    assert report["counts"]["train"] + report["counts"]["heldout"] == 600  # unparseable rows left out
    assert 90 < report["counts"]["heldout"] < 150
    q, r = report["quality_model"], report["relevance_score"]
    assert q["spearman"] > 0.9 and q["f1_at_3"]["f1"] > 0.8
    assert r["spearman"] < 0.8 and q["spearman"] > r["spearman"] + 0.1
    assert sum(map(sum, q["confusion"])) == report["counts"]["heldout"]
    assert sum(q["confusion"][k][k] for k in range(6)) / report["counts"]["heldout"] == pytest.approx(
        q["exact"]
    )
    assert q["exact"] > 0.6
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["kind"] == "fasttext" and sidecar["prompt_version"] == VERSION
    assert sidecar["counts"]["train"] == report["counts"]["train"]
    markdown = out.with_suffix(".report.md").read_text()
    assert "| Spearman |" in markdown and "Confusion matrix, relevance score" in markdown
    assert json.loads(out.with_suffix(".report.json").read_text())["version"] == sidecar["version"]


def test_the_scorer_ranks_unseen_pages_by_their_score(fasttext_report):
    _, out = fasttext_report
    scorer = quality_scorer_for(out)
    assert isinstance(scorer, FastTextQualityScorer)
    rng = random.Random(99)
    means = [sum(scorer.score_batch([page(s, rng) for _ in range(20)])) / 20 for s in range(6)]
    assert means == sorted(means) and means[5] - means[0] > 3
    assert scorer.score(page(5, rng)) > scorer.score(page(0, rng))
    assert scorer.score("") == 0.0
    clone = pickle.loads(pickle.dumps(scorer))  # what a Spark executor receives: the path, loaded there
    assert not clone._model.loaded and clone.score(page(4, rng)) > 2.5
    assert cached_quality_scorer(str(out), scorer.version) is cached_quality_scorer(str(out), scorer.version)
    with pytest.raises(ValueError, match="is version"):
        cached_quality_scorer(str(out), "older")


def test_prompt_versions_are_kept_apart(annotations, tmp_path):
    other = annotations / ANNOTATIONS_DIR / "part-b-00000.parquet"
    write_part(other.parent, other.name, [annotation("v2doc", "x", 3, 0.5, version="finemath-additive-v2")])
    try:
        with pytest.raises(ValueError, match="several prompt versions"):
            train_quality(QualityTrainConfig(annotations=str(annotations), output=str(tmp_path / "m.bin")))
        with pytest.raises(ValueError, match="no annotations of prompt version"):
            train_quality(QualityTrainConfig(annotations=str(annotations), output=str(tmp_path / "m.bin"),
                                             prompt_version="v9"))  # fmt: skip
    finally:
        other.unlink()
    with pytest.raises(FileNotFoundError, match="no annotations"):
        train_quality(QualityTrainConfig(annotations=str(tmp_path), output=str(tmp_path / "m.bin")))
    assert label_of(2.5) == "__label__3" and label_of(-1) == "__label__0"


# -- the frozen encoder -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A random BERT (transformers, no download) whose vocabulary holds the synthetic words."""
    transformers = pytest.importorskip("transformers")
    path = tmp_path_factory.mktemp("bert")
    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *FILLER,
        *(w for tier in TIERS.values() for w in tier),
    ]
    transformers.BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(path)
    config = transformers.BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=48, max_position_embeddings=96)  # fmt: skip
    import torch

    torch.manual_seed(0)  # the same random encoder on every run
    transformers.BertModel(config).save_pretrained(path)
    return path


def test_encoder_quality_model_with_a_frozen_encoder(annotations, tiny_bert, tmp_path):
    out = tmp_path / "quality.pt"
    config = QualityTrainConfig(annotations=str(annotations), output=str(out), heldout_fraction=0.2,
                                encoder=str(tiny_bert), encoder_max_tokens=80)  # fmt: skip
    report = train_quality(config)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert report["kind"] == sidecar["kind"] == "encoder" and sidecar["pooling"] == "mean"
    assert sidecar["train_mse"]["last"] < sidecar["train_mse"]["first"] / 2
    assert report["quality_model"]["spearman"] > 0.6
    scorer = quality_scorer_for(out)
    rng = random.Random(3)
    low, high = (
        scorer.score_batch([page(0, rng) for _ in range(10)]),
        scorer.score_batch([page(5, rng) for _ in range(10)]),
    )
    assert sum(high) / 10 > sum(low) / 10 + 1 and all(0 <= v <= 5 for v in low + high)
    assert not any(p.requires_grad for p in scorer._get()[0].model.parameters())  # the encoder stays frozen


def test_a_missing_transformers_is_a_clear_error(monkeypatch, tmp_path):
    from classifiers.quality_encoder import FrozenEncoder

    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"mathforge\[encoder\]"):
        FrozenEncoder(tmp_path)
