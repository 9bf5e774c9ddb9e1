"""fastText math classifier: normalisation, training end to end, the versioned model file, seeds."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from classifiers.math_classifier import (
    FastTextMathScorer,
    SeedRules,
    TrainingOptions,
    bootstrap_label,
    bootstrap_seed_labels,
    count_tex_formulas,
    normalize_for_classifier,
    read_model_metadata,
    sidecar_path_for,
    train_math_classifier,
)
from classifiers.math_score import MathScorer, RuleMathScorer
from crawl.math_eval import labelled_pages, read_page
from crawl.math_extract import extract_math_text

# Small hash table: the tests need a model that trains in seconds, not DeepSeekMath's memory footprint.
SMALL = TrainingOptions(bucket=20_000)


def test_normalisation_tokenises_tex_cjk_and_digits():
    line = normalize_for_classifier("Let $f(x)=\\frac{1}{x^2}$,\n设函数 in 2024.")
    assert line == "let $ f ( x ) = \\frac { 0 } { x ^ 0 } $ , 设 函 数 in 0000 ."
    assert "\n" not in normalize_for_classifier("a\nb\r\nc")
    assert len(normalize_for_classifier("word " * 10_000, max_chars=100)) <= 100


def test_defaults_are_deepseekmath_settings():
    options = TrainingOptions()
    assert (options.dim, options.lr, options.word_ngrams, options.min_count, options.epoch) == (
        256,
        0.1,
        3,
        3,
        3,
    )


@pytest.fixture(scope="module")
def page_texts(shared_data: Path) -> list[tuple[bool, str]]:
    return [
        (page.is_math, extract_math_text(read_page(shared_data / page.file), page.url).text)
        for page in labelled_pages(shared_data)
    ]


@pytest.fixture(scope="module")
def trained(page_texts, tmp_path_factory):
    train = [x for i, x in enumerate(page_texts) if i % 3]
    out = tmp_path_factory.mktemp("model") / "math-classifier.bin"
    result = train_math_classifier(
        [text for is_math, text in train if is_math],
        [text for is_math, text in train if not is_math],
        out,
        SMALL,
    )
    return result


def test_training_writes_model_and_sidecar(trained):
    assert trained.model_path.is_file()
    assert trained.sidecar_path == sidecar_path_for(trained.model_path)
    meta = json.loads(trained.sidecar_path.read_text())
    assert meta == trained.metadata
    assert meta["params"] == {
        "dim": 256,
        "lr": 0.1,
        "wordNgrams": 3,
        "minCount": 3,
        "epoch": 3,
        "bucket": 20_000,
    }
    assert 1 <= meta["training_attempts"] <= 4
    counts = meta["counts"]
    assert counts["positives"] > 10 and counts["negatives"] > 200
    assert counts["train"] + counts["heldout"] == counts["positives"] + counts["negatives"]
    assert counts["train_lines"] > counts["train"]
    held = meta["heldout"]
    assert held["n"] == counts["heldout"] > 0
    assert 0.0 <= held["precision"] <= 1.0 and 0.0 <= held["recall"] <= 1.0
    assert meta["sha256"][:8] in meta["version"]
    assert not list(trained.model_path.parent.glob("*.tmp"))


def test_trained_scorer_ranks_unseen_math_pages_above_other_pages(trained, page_texts):
    scorer = FastTextMathScorer(trained.model_path)
    assert isinstance(scorer, MathScorer)
    assert scorer.version == trained.metadata["version"]
    unseen = [x for i, x in enumerate(page_texts) if i % 3 == 0]
    scores = scorer.score_batch([text for _, text in unseen])
    assert all(0.0 <= s <= 1.0 for s in scores)
    pos = [s for s, (is_math, _) in zip(scores, unseen, strict=True) if is_math]
    neg = [s for s, (is_math, _) in zip(scores, unseen, strict=True) if not is_math]
    assert len(pos) >= 5
    auc = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert auc >= 0.75, auc


def test_scorer_batch_single_empty_and_pickle_agree(trained):
    scorer = FastTextMathScorer(trained.model_path)
    texts = ["Let $x^2+y^2=z^2$ and $\\frac{a}{b}$.", "", "The match ended two to one."]
    batch = scorer.score_batch(texts)
    assert batch[1] == 0.0
    assert batch[0] == pytest.approx(scorer.score(texts[0]))
    clone = pickle.loads(pickle.dumps(scorer))
    assert clone.score_batch(texts) == pytest.approx(batch)


def test_model_without_sidecar_or_wrong_format_is_refused(trained, tmp_path):
    lonely = tmp_path / "lonely.bin"
    lonely.write_bytes(trained.model_path.read_bytes())
    with pytest.raises(FileNotFoundError, match="sidecar"):
        FastTextMathScorer(lonely)
    sidecar_path_for(lonely).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="sidecar"):
        read_model_metadata(lonely)
    with pytest.raises(FileNotFoundError):
        FastTextMathScorer(tmp_path / "missing.bin")


def test_training_needs_both_classes(tmp_path):
    with pytest.raises(ValueError, match="both classes"):
        train_math_classifier(["$x^2$ and more"], ["", "   "], tmp_path / "m.bin", SMALL)


def test_bootstrap_labels_are_high_precision():
    filler = " Some words of prose around the formulas to make a page of reasonable length." * 4
    math_text = "We have $x^2$, then $\\frac{a}{b}$ and $$\\sum_i a_i$$." + filler
    prices = "Tickets cost $5 and $10, or $15 at the door." + filler
    plain = "The club met on Tuesday to plan the summer festival and the football match." * 5
    assert count_tex_formulas(math_text) == 3
    assert count_tex_formulas(prices) == 0
    assert bootstrap_label(math_text) == "math"
    assert bootstrap_label(prices) is None  # dollars but no TeX: neither a seed nor a clean negative
    assert bootstrap_label(plain) == "other"
    assert bootstrap_label("$x^2$ $y^2$ $z^2$") is None  # too short to be a page
    pos, neg = bootstrap_seed_labels([math_text, prices, plain, plain], max_per_class=1)
    assert pos == [math_text] and neg == [plain]


def test_bootstrapped_seeds_from_real_pages_are_math(page_texts):
    pos, neg = bootstrap_seed_labels([text for _, text in page_texts], SeedRules())
    labels = {text: is_math for is_math, text in page_texts}
    assert len(pos) >= 10 and len(neg) >= 100
    assert all(labels[t] for t in pos)  # every bootstrapped positive is a labelled math page
    # Stack Exchange pages labelled math for their MathJax markup but without a formula may land here.
    assert sum(labels[t] for t in neg) / len(neg) <= 0.02
    rule = RuleMathScorer()
    assert max(rule.score(t) for t in neg) < SeedRules().max_negative_score
