"""The quality score in the corpus job (issue 25 item 3): `--quality-model` fills `quality_score` on every kept
row, `--min-quality` drops and counts the rest, the manifest names the model, the work area's key changes with
it, STATS.md and report.html show the histogram and samples per bucket, the summary merges exactly across
snapshots, and a corpus from before the column still refreshes.

The quality model is real fastText, trained here by the project's own trainer on synthetic annotations of the
real CC sample's pages (a score per page from a hash of its id), so its scores spread over 0-5 on exactly the
pages the builds read. The build without a model is the session's `cc_corpus`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from classifiers.quality import QualityFastTextOptions, train_fasttext_quality
from jobs.build_corpus import build_corpus, extraction_settings
from jobs.config import CorpusBuildConfig, CorpusRefreshConfig
from jobs.corpus_pipeline import QualityModel
from jobs.corpus_schema import spark_schema
from jobs.corpus_summary import (
    QUALITY_SAMPLES,
    SUMMARY_FILE,
    merge_states,
    public_summary,
    quality_samples,
    scan_rows,
    summarise_corpus,
)
from jobs.corpus_work import run_key
from jobs.refresh_corpus import refresh_corpus
from mathforge.cli import main

from .conftest import CC
from .test_report import _chromium, _chromium_run

pytestmark = pytest.mark.spark

MIN_QUALITY = 2.5
QUALITY_KEYS = ("quality_buckets", "quality_unscored", "quality_sample_candidates")


def _rows(corpus: Path) -> dict[str, dict]:
    return {r["id"]: r for r in ds.dataset(corpus / "data", format="parquet").to_table().to_pylist()}


def _annotation(doc_id: str) -> int:
    """A synthetic 0-5 annotation, fixed per page."""
    return int(hashlib.sha1(doc_id.encode()).hexdigest(), 16) % 6


@pytest.fixture(scope="module")
def quality_model(cc_corpus, tmp_path_factory) -> Path:
    """A fastText quality model fitted to synthetic annotations of the CC sample's pages."""
    rows = list(_rows(cc_corpus[0]).values())
    assert len({_annotation(r["id"]) >= 3 for r in rows}) == 2  # pages on both sides of MIN_QUALITY
    out = tmp_path_factory.mktemp("quality") / "quality.bin"
    options = QualityFastTextOptions(dim=16, lr=1.0, epoch=100, min_count=1, bucket=20_000, threads=1)
    texts, scores = [r["text"] for r in rows], [_annotation(r["id"]) for r in rows]
    train_fasttext_quality(texts * 5, scores * 5, out, options)
    return out


@pytest.fixture(scope="module")
def scored(spark, shared_data, quality_model, tmp_path_factory) -> tuple[Path, dict]:
    """The one build with the model: the cc_corpus settings plus --quality-model and --min-quality."""
    out = tmp_path_factory.mktemp("scored") / "corpus"
    cfg = CorpusBuildConfig(
        input=str(shared_data / "warc" / CC),
        output=str(out),
        langs="all",
        min_math_score=0.0,
        quality_model=str(quality_model),
        min_quality=MIN_QUALITY,
    )
    cfg.preflight()
    return out, build_corpus(spark, cfg)


def test_without_a_quality_model_the_column_is_null_and_nothing_is_reported(cc_corpus):
    out, stats = cc_corpus
    rows = _rows(out)
    assert rows and all(r["quality_score"] is None for r in rows.values())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quality_model"] is None and manifest["runs"][0]["quality_model"] is None
    assert "quality_score" in {c["name"] for c in manifest["schema"]}
    assert not any(k.startswith("drop:quality") for k in stats["counters"])
    assert stats["quality_unscored"] == stats["kept"] and not any(n for _, n in stats["quality_histogram"])
    assert "Quality score" not in (out / "STATS.md").read_text()
    assert "built without --quality-model" in (out / "report.html").read_text()


def test_kept_rows_carry_the_models_score_and_the_rest_are_dropped_and_counted(
    scored, cc_corpus, quality_model
):
    out, stats = scored
    plain_out, plain = cc_corpus
    model = QualityModel(quality_model)
    rows, plain_rows = _rows(out), _rows(plain_out)
    expected = {i: model.score(r["text"]) for i, r in plain_rows.items()}
    assert {i for i, s in expected.items() if s >= MIN_QUALITY} == set(rows)  # no dedup removals here
    assert 0 < len(rows) < len(plain_rows)
    for doc_id, row in rows.items():
        assert MIN_QUALITY <= row["quality_score"] <= 5
        assert row["quality_score"] == pytest.approx(expected[doc_id], abs=1e-3)
        assert {k: v for k, v in row.items() if k != "quality_score"} == {
            k: v for k, v in plain_rows[doc_id].items() if k != "quality_score"
        }
    counters = stats["counters"]
    assert counters["drop:quality"] == len(plain_rows) - len(rows) > 0
    assert counters["kept"] + counters["drop:quality"] == plain["counters"]["kept"]
    assert "drop:quality" in (out / "STATS.md").read_text()


def test_manifest_names_the_model_and_the_resume_key_changes_with_it(scored, quality_model, tmp_path):
    out, _ = scored
    manifest = json.loads((out / "manifest.json").read_text())
    sidecar = json.loads(quality_model.with_suffix(".json").read_text())
    digest = hashlib.sha256(quality_model.read_bytes()).hexdigest()
    assert manifest["quality_model"] == {
        "name": "fasttext-quality",
        "version": sidecar["version"],
        "path": str(quality_model),
        "sha256": digest,
    }
    assert manifest["runs"][0]["quality_model"] == sidecar["version"]
    assert manifest["config"]["min_quality"] == MIN_QUALITY

    from jobs.corpus_pipeline import CorpusPipeline

    def key(**settings) -> str:
        cfg = CorpusBuildConfig(output=str(tmp_path / "c"), **settings)
        return run_key(extraction_settings(CorpusPipeline(cfg), None))

    with_model = key(quality_model=str(quality_model))
    assert len({key(), with_model, key(quality_model=str(quality_model), min_quality=1.0)}) == 3
    # a model retrained in place (same path, same settings, another version) never resumes the old one's rows
    retrained = tmp_path / "retrained" / quality_model.name
    retrained.parent.mkdir()
    shutil.copyfile(quality_model, retrained)
    shutil.copyfile(quality_model.with_suffix(".json"), retrained.with_suffix(".json"))
    before = key(quality_model=str(retrained))
    retrained.with_suffix(".json").write_text(json.dumps({**sidecar, "version": "retrained"}))
    assert key(quality_model=str(retrained)) != before


def test_quality_settings_are_checked_before_spark(tmp_path, quality_model):
    with pytest.raises(ValueError, match="--min-quality needs --quality-model"):
        CorpusBuildConfig(output=str(tmp_path / "c"), input=str(tmp_path), min_quality=3.0).preflight()
    with pytest.raises(ValueError, match="0-5 scale"):
        CorpusBuildConfig(
            output=str(tmp_path / "c"), quality_model=str(quality_model), min_quality=7.0
        ).check_quality_settings()
    with pytest.raises(FileNotFoundError, match="quality model not found"):
        CorpusBuildConfig(
            output=str(tmp_path / "c"), input=str(quality_model), quality_model=str(tmp_path / "none.bin")
        ).preflight()
    tampered = tmp_path / "tampered.bin"  # a model file that is not the one its sidecar describes
    tampered.write_bytes(quality_model.read_bytes() + b"\0")
    shutil.copyfile(quality_model.with_suffix(".json"), tampered.with_suffix(".json"))
    with pytest.raises(ValueError, match="not the file its sidecar describes"):
        QualityModel(tampered)


def _histogram(scores: list[float]) -> list[int]:
    return [sum(1 for s in scores if min(int(s * 2), 9) == b) for b in range(10)]


def test_stats_and_report_show_the_histogram_and_samples_per_bucket(scored, tmp_path):
    out, _ = scored
    scores = [r["quality_score"] for r in _rows(out).values()]
    on_disk = json.loads((out / "stats.json").read_text())
    assert [n for _, n in on_disk["quality_histogram"]] == _histogram(scores)
    assert on_disk["quality_unscored"] == 0
    rows = _rows(out)
    for group in on_disk["quality_samples"]:
        low, high = group["low"], group["high"]
        in_bucket = [
            r
            for r in rows.values()
            if low <= r["quality_score"] < high or (high == 5 and r["quality_score"] == 5)
        ]
        assert len(group["samples"]) == min(QUALITY_SAMPLES, len(in_bucket))
        for doc in group["samples"]:
            row = rows[doc["id"]]
            assert doc["url"] == row["url"] and doc["text"] == row["text"][:201]
            assert low <= doc["quality_score"] < high

    markdown = (out / "STATS.md").read_text()
    assert "## Quality score of kept documents" in markdown
    for lo, n in on_disk["quality_histogram"]:
        label = f"[{lo:.1f}, {lo + 0.5:.1f}]" if lo == 4.5 else f"[{lo:.1f}, {lo + 0.5:.1f})"
        assert f"| {label} | {n} |" in markdown
    shown = [d for g in on_disk["quality_samples"] for d in g["samples"]]
    assert shown and all(f"`{d['url']}` (quality {d['quality_score']:.2f})" in markdown for d in shown)

    report = out / "report.html"
    dom = _chromium_run(_chromium(), tmp_path / "profile", "--dump-dom", report.as_uri()).stdout
    quality = dom.split('<section id="quality">')[1].split("</section>")[0]
    assert re.search(r'<figure data-plot="quality"><img [^>]*src="data:image/png;base64,', quality)
    assert "--min-quality 2.5" in quality
    assert quality.count('<div class="doc quality-doc">') == len(shown)
    assert quality.count("<h3 data-quality-bucket=") == len(on_disk["quality_samples"])


def test_quality_summary_merges_exactly_across_snapshots(spark, scored, cc_corpus):
    """Two disjoint halves of the rows, summarised apart and merged, equal one scan of all of them; and a
    summary stored before the quality figures existed merges as all unscored."""
    out, _ = scored
    df = spark.read.parquet(str(out / "data"))
    half = df.where("conv(substring(id, 1, 2), 16, 10) % 2 = 0")
    other = df.where("conv(substring(id, 1, 2), 16, 10) % 2 = 1")
    whole, domains = scan_rows(df)
    merged = merge_states(scan_rows(half)[0], scan_rows(other)[0])
    assert {k: merged[k] for k in QUALITY_KEYS} == {k: whole[k] for k in QUALITY_KEYS}
    assert sum(len(g) for g in whole["quality_sample_candidates"]) > QUALITY_SAMPLES  # several buckets
    plan = quality_samples(df)._jdf.queryExecution().executedPlan().toString()
    assert "WindowGroupLimit" in plan and "Partial" in plan  # bounded per task before the shuffle

    old = {k: v for k, v in scan_rows(spark.read.parquet(str(cc_corpus[0] / "data")))[0].items()
           if k not in QUALITY_KEYS}  # fmt: skip
    mixed = public_summary(merge_states(old, whole), domains)
    assert mixed["quality_unscored"] == old["kept"]
    assert [n for _, n in mixed["quality_histogram"]] == whole["quality_buckets"]


def _legacy_copy(corpus: Path, dest: Path) -> Path:
    """A copy of `corpus` as a build from before the column wrote it: no quality_score in its Parquet files,
    its manifest or config, nor quality figures in its stored summary."""
    shutil.copytree(corpus.with_name(f"{corpus.name}.versions"), dest.with_name(f"{dest.name}.versions"))
    os.symlink(f"{dest.name}.versions/{Path(os.readlink(corpus)).name}", dest)
    for part in (dest / "data").rglob("*.parquet"):
        table = pq.read_table(part, partitioning=None)
        pq.write_table(table.drop_columns(["quality_score"]), part)
        part.with_name(f".{part.name}.crc").unlink(missing_ok=True)  # Hadoop's checksum of the old bytes
    for name in ("manifest.json", SUMMARY_FILE):
        doc = json.loads((dest / name).read_text())
        for key in (*QUALITY_KEYS, "quality_model"):
            doc.pop(key, None)
        for key in ("quality_model", "min_quality"):
            doc.get("config", {}).pop(key, None)
        if "schema" in doc:
            doc["schema"] = [c for c in doc["schema"] if c["name"] != "quality_score"]
        for run in doc.get("runs", []):
            run.pop("quality_model", None)
        (dest / name).write_text(json.dumps(doc))
    return dest


def test_refresh_of_a_corpus_built_before_the_column(spark, cc_corpus, shared_data, tmp_path):
    legacy = _legacy_copy(cc_corpus[0], tmp_path / "legacy")
    old_rows = _rows(legacy)
    assert "quality_score" not in next(iter(old_rows.values()))
    new_input = shared_data / "warc" / "commoncrawl" / "whirlwind_CC-MAIN-2024-22.warc.gz"
    inputs = f"{shared_data / 'warc' / CC},{new_input}"
    stats = refresh_corpus(spark, CorpusRefreshConfig(corpus=str(legacy), input=inputs, master="local[1]"))
    assert stats["inputs"]["total"] == 1 and stats["added"] == 1
    # Spark over every snapshot with the schema: the old snapshot's missing column reads as null
    everything = spark.read.schema(spark_schema()).parquet(str(legacy / "data"))
    assert everything.count() == len(old_rows) + 1 == stats["kept"]
    assert everything.where("quality_score IS NOT NULL").count() == 0
    new_part = [
        p for p in (legacy / "data").iterdir() if p.name != next(iter((cc_corpus[0] / "data").iterdir())).name
    ]
    assert len(new_part) == 1 and "quality_score" in ds.dataset(new_part[0]).schema.names
    assert stats["quality_unscored"] == stats["kept"] and not any(n for _, n in stats["quality_histogram"])
    full = summarise_corpus(spark, legacy / "data")  # a full scan agrees with the merged summary
    assert full["quality_unscored"] == stats["quality_unscored"] and full["kept"] == stats["kept"]
    manifest = json.loads((legacy / "manifest.json").read_text())
    assert manifest["quality_model"] is None and [r["kind"] for r in manifest["runs"]] == ["build", "refresh"]


def test_inspect_shows_the_quality_score_with_a_model(quality_model, shared_data, capsys):
    page = shared_data / "html_math" / "misc" / "mathjax-demo_tex-chtml.html"
    assert main(["inspect", str(page), "--compact", "--quality-model", str(quality_model)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["quality_score"] == QualityModel(quality_model).score(shown["text"])
    assert 0 <= shown["quality_score"] <= 5 and shown["quality_model"]["name"] == "fasttext-quality"
    assert main(["inspect", str(page), "--compact"]) == 0
    assert "quality_score" not in json.loads(capsys.readouterr().out)


def test_the_pipeline_scores_only_pages_the_other_rules_kept(quality_model, shared_data, tmp_path):
    """Pages the language rule drops never reach the quality model (the cost is paid for kept pages only)."""
    from jobs.corpus_pipeline import CorpusPipeline

    cfg = CorpusBuildConfig(
        output=str(tmp_path / "c"), langs="de", min_math_score=0.0, quality_model=str(quality_model)
    )
    pipeline = CorpusPipeline(cfg)
    calls: list[str] = []
    scorer = pipeline.analyser.quality.scorer
    original = scorer.score
    scorer.score = lambda text: calls.append(text) or original(text)  # type: ignore[method-assign]
    counters: Counter = Counter()
    rows = list(pipeline.process_file(str(shared_data / "warc" / CC), counters))
    scored = [text for text in calls if text != "warm up"]  # load_models warms the model up first
    assert counters["drop:lang"] > 0 and len(scored) == len(rows) == counters["kept"] > 0
