"""The math-classifier training job (Spark local mode) on the generated sample crawl, and its use by the corpus job."""

import json

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from classifiers.math_classifier import FastTextMathScorer
from jobs.build_corpus import build_corpus
from jobs.classifier_seeds import read_seed_texts, stable_fraction
from jobs.config import ClassifierTrainConfig, CorpusBuildConfig
from jobs.train_math_classifier import train_classifier
from samplecrawl.writer import write_sample_crawl

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    return write_sample_crawl(out, n_files=3, records_per_file=50, seed=7), out / "sample_manifest.json"


@pytest.fixture(scope="module")
def trained(spark, crawl, tmp_path_factory):
    paths, _ = crawl
    model = tmp_path_factory.mktemp("model") / "math.bin"
    # more epochs than DeepSeekMath's 3 (which assume ~1M seeds), fewer buckets (small model)
    report = train_classifier(
        spark, ClassifierTrainConfig(input=str(paths), output=str(model), epoch=15, bucket=20000)
    )
    return model, report


def test_bootstrapped_training_writes_a_versioned_model(trained):
    model, report = trained
    sidecar = json.loads(model.with_suffix(".json").read_text())
    assert report["seed_source"] == "bootstrap" and report["version"] == sidecar["version"]
    assert sidecar["params"] == {
        "dim": 256,
        "lr": 0.1,
        "wordNgrams": 3,
        "minCount": 3,
        "epoch": 15,
        "bucket": 20000,
    }
    assert report["counters"]["seed:math"] > 10 and report["counters"]["seed:other"] > 10
    scorer = FastTextMathScorer(model)
    math_text = (
        "Solve $x^2 - 5x + 6 = 0$. Factor: $(x-2)(x-3)=0$, so $x=2$ or $x=3$. "
        "The discriminant is $b^2-4ac = 1$. $$x = \\frac{5 \\pm 1}{2}$$"
    )
    prose = "We drove along the coast for three days and ate grilled sardines in small fishing villages."
    assert scorer.score(math_text) > scorer.score(prose)


def test_corpus_build_uses_the_trained_model(spark, crawl, trained, tmp_path):
    paths, manifest_path = crawl
    model, report = trained
    out = tmp_path / "corpus"
    build_corpus(spark, CorpusBuildConfig(input=str(paths), output=str(out), math_model=str(model)))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["math_scorer"] == {"name": "fasttext", "version": report["version"]}
    records = [r for r in json.loads(manifest_path.read_text())["records"] if r["warc_type"] == "response"]
    math = {
        r["record_id"]: r["duplicate_of"] or r["record_id"]
        for r in records
        if r["is_math"] and r["http_status"] == 200 and not r["broken"]
    }
    kept = ds.dataset(out / "data", format="parquet").to_table().to_pylist()
    kept_ids = {r["warc_record_id"] for r in kept}
    precision = len(kept_ids & set(math)) / len(kept_ids)
    recall = len({math[i] for i in kept_ids if i in math}) / len(
        set(math.values())
    )  # one per duplicate cluster
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)
    assert all(r["is_math"] for r in kept)


def test_user_seeds_replace_the_bootstrap(spark, crawl, tmp_path):
    paths, _ = crawl
    seeds = tmp_path / "seeds.jsonl"
    texts = [
        f"Lemma {i}. For every integer $n \\ge {i}$ we have $\\sum_{{k=1}}^n k = n(n+1)/2$, "
        f"proved by induction on $n$ with the step $n \\to n+1$."
        for i in range(30)
    ]
    seeds.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    model = tmp_path / "m.bin"
    report = train_classifier(
        spark, ClassifierTrainConfig(input=str(paths), output=str(model), positives=str(seeds))
    )
    assert report["seed_source"] == "user" and report["counts"]["positives"] == 30
    assert "seed:math" not in report["counters"]


def test_seed_files_parquet_jsonl_and_errors(tmp_path):
    pq.write_table(pa.table({"text": ["a b c", "", "d e f"]}), tmp_path / "s.parquet")
    assert read_seed_texts(str(tmp_path / "s.parquet")) == ["a b c", "d e f"]
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="no 'text' column"):
        read_seed_texts(str(tmp_path / "bad.parquet"))
    (tmp_path / "broken.jsonl").write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(ValueError, match=r"broken\.jsonl:2"):
        read_seed_texts(str(tmp_path / "broken.jsonl"))
    with pytest.raises(FileNotFoundError):
        read_seed_texts(str(tmp_path / "missing.jsonl"))


def test_stable_fraction_is_deterministic_and_spread():
    values = [stable_fraction(f"doc {i}") for i in range(2000)]
    assert values == [stable_fraction(f"doc {i}") for i in range(2000)]
    assert 0.45 < sum(v < 0.5 for v in values) / len(values) < 0.55
