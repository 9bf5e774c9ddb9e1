"""The Spark job end to end in local mode, on real Common Crawl data and on damaged inputs."""

import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from classifiers.math_classifier import FORMAT, FORMAT_VERSION, sidecar_path_for
from jobs.build_corpus import build_corpus
from jobs.config import CorpusBuildConfig
from jobs.corpus_output import OutputExistsError
from jobs.corpus_schema import REQUIRED_COLUMNS, arrow_schema

from .conftest import CC  # the cc_corpus fixture's input
from .warcs import write_html_warc

pytestmark = pytest.mark.spark

REQUIRED = [
    "id",
    "url",
    "domain",
    "crawl",
    "warc_path",
    "warc_record_id",
    "fetch_time",
    "lang",
    "lang_score",
    "math_score",
    "text",
]


def _rows(out: Path) -> list[dict]:
    return sorted(ds.dataset(out / "data", format="parquet").to_table().to_pylist(), key=lambda r: r["id"])


def test_every_html_response_yields_a_row_with_the_contract_columns(cc_corpus, shared_data):
    out, stats = cc_corpus
    index = json.loads((shared_data / "warc" / "warc_index.json").read_text())["files"][CC]["payload_records"]
    rows = _rows(out)
    assert sorted(r["url"] for r in rows) == sorted(r["uri"] for r in index)
    for row in rows:
        assert all(row[c] not in (None, "") for c in REQUIRED), row["url"]
        assert (
            row["crawl"] == "CC-MAIN-2020-34" and 0 <= row["math_score"] <= 1 and 0 < row["lang_score"] <= 1
        )
    assert len({r["id"] for r in rows}) == len(rows)
    assert stats["kept"] == len(rows) and stats["counters"]["html_responses"] == len(rows)


def test_language_agrees_with_common_crawls_labels(cc_corpus, shared_data):
    out, _ = cc_corpus
    index = json.loads((shared_data / "warc" / "warc_index.json").read_text())["files"][CC]["payload_records"]
    cc_label = {r["uri"]: r["cc_languages_cld2"][0] for r in index}
    rows = _rows(out)
    agree = sum(r["lang"] == cc_label[r["url"]] for r in rows)
    assert agree / len(rows) >= 0.8
    russian = [r for r in rows if cc_label[r["url"]] == "ru"]
    assert russian and all(sum("\u0400" <= ch <= "\u04ff" for ch in r["text"]) > 50 for r in russian)


def test_manifest_and_stats_describe_the_run(cc_corpus):
    out, stats = cc_corpus
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"] and manifest["config"]["min_math_score"] == 0.0
    assert manifest["versions"]["warcio"] == "1.8.1" and manifest["counts"]["documents"] == stats["kept"]
    assert manifest["versions"]["resiliparse"] == "2.0.0"  # it writes every page's first-stage text
    assert {c["name"] for c in manifest["schema"]} >= set(REQUIRED)
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["counters"] == stats["counters"] and sum(on_disk["by_lang"].values()) == stats["kept"]
    report = (out / "STATS.md").read_text()
    assert "Where the records went" in report and "skip:request_record" in report
    assert not list(out.parent.glob("*.staging-*"))


def test_arrow_schema_is_the_schema_the_job_writes(cc_corpus):
    out, _ = cc_corpus
    assert ds.dataset(out / "data", format="parquet").schema.remove_metadata() == arrow_schema()
    assert list(REQUIRED_COLUMNS) == REQUIRED  # the schema module declares DESIGN.md's required columns


def test_rerun_gives_the_same_rows(spark, cc_corpus, shared_data, tmp_path):
    out, _ = cc_corpus
    again = tmp_path / "again"
    build_corpus(
        spark, CorpusBuildConfig(input=str(shared_data / "warc" / CC), output=str(again), min_math_score=0.0)
    )
    strip = lambda rows: [{k: v for k, v in r.items() if k != "warc_path"} for r in rows]  # noqa: E731
    assert strip(_rows(again)) == strip(_rows(out))


def test_existing_output_is_refused_without_overwrite(spark, cc_corpus, shared_data):
    out, _ = cc_corpus
    cfg = CorpusBuildConfig(input=str(shared_data / "warc" / CC), output=str(out), min_math_score=0.0)
    with pytest.raises(OutputExistsError):
        build_corpus(spark, cfg)
    assert (out / "manifest.json").exists()


def test_damaged_inputs_are_counted_and_good_records_kept(spark, shared_data, tmp_path):
    other = shared_data / "warc" / "other"
    names = [
        "resiliparse_clipped.warc.gz",
        "warcio_example-bad-non-chunked.warc.gz",
        "warcio_example-trunc.warc",
        "warcio_example-wrong-chunks.warc.gz",
        "warcio_example.arc.gz",
        "warcio_example.warc",
        "ia-web-commons_html-lang-attribute.warc",
        "dolma_sample-0000.warc.gz",
    ]
    paths = tmp_path / "warc.paths"
    paths.write_text("\n".join([str(other / n) for n in names] + [str(tmp_path / "gone.warc.gz")]) + "\n")
    out = tmp_path / "corpus"
    cfg = CorpusBuildConfig(
        input=str(paths), output=str(out), min_math_score=0.0, exact_dedup=False, near_dedup=False
    )  # warcio_example.warc and .warc.gz hold the same page
    stats = build_corpus(spark, cfg)
    rows = _rows(out)
    by_file = {Path(f["path"]).name: f for f in stats["per_file"]}
    assert by_file["gone.warc.gz"]["errors"] == {"input_missing": 1}
    assert set(by_file["resiliparse_clipped.warc.gz"]["errors"]) & {"truncated_record", "truncated_gzip"}
    failed = {Path(f["path"]).name for f in stats["inputs"]["failed"]}
    assert {"gone.warc.gz", "resiliparse_clipped.warc.gz"} <= failed
    # good records around the damage: the pages of the intact and recoverable files are all there
    kept_files = {Path(r["warc_path"]).name for r in rows}
    assert {"warcio_example.arc.gz", "dolma_sample-0000.warc.gz"} <= kept_files
    # warcio_example.warc, -trunc.warc and -bad-non-chunked.warc.gz hold the same record (one id): it is kept
    # once, from the first of those files by path, whatever order the tasks ran in
    same_record = {
        "warcio_example-bad-non-chunked.warc.gz",
        "warcio_example-trunc.warc",
        "warcio_example.warc",
    }
    holders = [r for r in rows if Path(r["warc_path"]).name in same_record]
    assert len(holders) == len({r["id"] for r in holders}) >= 1
    assert len({r["id"] for r in rows}) == len(rows)
    assert "warcio_example-bad-non-chunked.warc.gz" in kept_files
    assert stats["cleaning"]["ids"]["repeated_id"] == len(same_record & set(by_file)) - 1
    assert sum(1 for r in rows if r["warc_path"].endswith("dolma_sample-0000.warc.gz")) >= 15
    # the five html-lang test pages have an empty <body/>: read, then dropped for having no text
    assert by_file["ia-web-commons_html-lang-attribute.warc"]["html_responses"] == 5
    assert stats["counters"]["drop:empty_text"] >= 5
    # each file's count is of what it gave; the corpus holds the record they repeat once
    repeated = stats["cleaning"]["ids"]["repeated_id"]
    assert stats["kept"] == len(rows) == sum(f["kept"] for f in stats["per_file"]) - repeated


MATH_EN = (
    "<html><body><article><h1>Solving quadratic equations</h1><p>To solve the equation "
    "\\(x^2 - 5x + 6 = 0\\) we factor the polynomial: \\((x-2)(x-3) = 0\\), so the solutions are "
    "\\(x = 2\\) and \\(x = 3\\). In general the roots are $$x = \\frac{-b \\pm \\sqrt{b^2-4ac}}{2a}.$$ "
    "The discriminant \\(b^2 - 4ac\\) decides whether the roots are real.</p></article></body></html>"
)
PROSE_EN = (
    "<html><body><article><h1>Our summer trip</h1><p>We drove along the coast for three days, stopping in "
    "small fishing villages, eating grilled sardines and swimming in cold clear water every morning. "
    "The weather was kind to us and the children loved the beaches.</p></article></body></html>"
)
MATH_DE = (
    "<html><body><article><h1>Quadratische Gleichungen</h1><p>Die Gleichung \\(x^2 - 5x + 6 = 0\\) "
    "lösen wir durch Faktorisieren: \\((x-2)(x-3) = 0\\), also sind die Lösungen \\(x = 2\\) und \\(x = 3\\). "
    "Allgemein gilt $$x = \\frac{-b \\pm \\sqrt{b^2-4ac}}{2a}.$$ Die Diskriminante entscheidet über die "
    "Anzahl der reellen Lösungen.</p></article></body></html>"
)


def test_language_and_math_filters(spark, tmp_path):
    warc = write_html_warc(
        tmp_path / "mini.warc.gz",
        [
            ("https://a.example/math", MATH_EN),
            ("https://b.example/trip", PROSE_EN),
            ("https://c.example/mathe", MATH_DE),
        ],
    )
    out = tmp_path / "corpus"
    stats = build_corpus(
        spark, CorpusBuildConfig(input=str(warc), output=str(out), langs="en", min_math_score=0.5)
    )
    rows = _rows(out)
    assert [r["url"] for r in rows] == ["https://a.example/math"]
    assert rows[0]["domain"] == "a.example" and rows[0]["lang"] == "en"
    assert stats["counters"]["drop:lang"] == 1 and stats["counters"]["drop:math_score"] == 1


def test_failed_run_leaves_nothing_that_looks_finished(spark, tmp_path):
    warc = write_html_warc(tmp_path / "mini.warc.gz", [("https://a.example/math", MATH_EN)])
    broken_model = tmp_path / "lid.176.ftz"
    broken_model.write_bytes(b"not a fastText model")
    out = tmp_path / "corpus"
    with pytest.raises(Exception, match=r"cannot be opened|fastText|model"):
        build_corpus(spark, CorpusBuildConfig(input=str(warc), output=str(out), lid_model=str(broken_model)))
    assert not out.exists()
    assert not list(tmp_path.glob("corpus.staging-*"))
    assert not list(tmp_path.glob("corpus.work*"))  # no file was attempted: no work area to resume


def test_missing_model_is_a_clear_error_before_any_task(spark, tmp_path):
    warc = write_html_warc(tmp_path / "mini.warc.gz", [("https://a.example/math", MATH_EN)])
    with pytest.raises(FileNotFoundError, match="language-ID model not found"):
        build_corpus(
            spark, CorpusBuildConfig(input=str(warc), output=str(tmp_path / "o"), lid_model="/nope.ftz")
        )
    assert not (tmp_path / "o").exists()


def test_broken_math_model_fails_the_job_before_anything_is_written(spark, tmp_path):
    warc = write_html_warc(tmp_path / "mini.warc.gz", [("https://a.example/math", MATH_EN)])
    model = tmp_path / "math.bin"
    model.write_bytes(b"<html><body>404 Not Found</body></html>\n" * 50)  # what a failed download leaves
    sidecar_path_for(model).write_text(  # the sidecar is fine: only the model file is broken
        json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, "version": "20240101000000-abcdef12"})
    )
    before = sorted(p.name for p in tmp_path.iterdir())
    sc = spark.sparkContext
    sc.setJobGroup("broken-math-model", "a build that must not start")
    try:
        with pytest.raises(ValueError, match=r"math model .*math\.bin is not a fastText model"):
            build_corpus(
                spark,
                CorpusBuildConfig(input=str(warc), output=str(tmp_path / "corpus"), math_model=str(model)),
            )
        assert sc.statusTracker().getJobIdsForGroup("broken-math-model") == []  # no Spark job ran
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
        sc.setLocalProperty("spark.job.description", None)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no staging directory
