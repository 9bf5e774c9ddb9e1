"""The `mathforge` command as a user runs it: the installed console script, as a subprocess.

One sample crawl (`mathforge sample-crawl`) and one trained classifier (`mathforge classifier train`) are made
once for the module and reused; `inspect` is also checked in-process on the real pages of ../shared/data.
"""

from __future__ import annotations

import collections
import filecmp
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from crawl.math_eval import formula_hits, gold_pages
from crawl.warc import read_html_responses
from jobs.corpus_pipeline import PageAnalyser, math_scorer_for
from mathforge.cli import main
from samplecrawl.writer import write_sample_crawl

from .warcs import write_response_warc

MATHFORGE = str(Path(sys.executable).parent / "mathforge")


def mathforge(*argv: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the installed `mathforge` console script, as a user would."""
    return subprocess.run([MATHFORGE, *argv], capture_output=True, text=True, timeout=timeout)


def _inspect(capsys, *argv: str) -> dict:
    assert main(["inspect", *argv, "--compact"]) == 0
    return json.loads(capsys.readouterr().out)


def test_inspect_reports_what_the_job_decides(capsys, shared_data):
    page = _inspect(capsys, str(shared_data / "html_math" / "mineru-webkit_ccmath" / "katex_mathjax.html.gz"))
    assert {"lang", "lang_score", "math_score", "text", "is_math", "stages"} <= set(page)
    assert page["lang"] == "en" and page["is_math"] and page["math_score"] >= 0.5
    assert page["stages"]["prefilter_hit"] and page["stages"]["math_extracted"]
    assert "\\frac" in page["text"] and "$$" in page["text"]


def test_gold_formulas_survive_in_inspects_text(capsys, shared_data):
    found = total = 0
    for gold in gold_pages(shared_data):
        args = [str(gold.path)] + (["--url", gold.url] if gold.url else [])
        found += formula_hits(_inspect(capsys, *args)["text"], gold.formulas)
        total += len(gold.formulas)
    assert total > 200 and found / total >= 0.9


def test_inspect_of_a_non_math_page_and_of_a_missing_file(capsys, shared_data):
    pages = sorted((shared_data / "html_general" / "trafilatura-eval").glob("*.html*"))
    page = _inspect(capsys, str(pages[0]))
    assert not page["is_math"] and not page["stages"]["math_extracted"] and page["text"]
    assert main(["inspect", str(shared_data / "no-such-page.html")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_inspect_command_through_the_console_script(shared_data):
    page = shared_data / "html_math" / "mineru-webkit_ccmath" / "katex_mathjax.html.gz"
    result = mathforge("inspect", str(page), "--compact", "--content-type", "text/html; charset=utf-8")
    assert result.returncode == 0, result.stderr[-2000:]
    shown = json.loads(result.stdout)
    assert shown["is_math"] and shown["lang"] == "en" and "$$" in shown["text"]
    assert (shown["charset"], shown["charset_source"]) == ("utf-8", "http-header")
    missing = mathforge("inspect", str(shared_data / "no-such-page.html"))
    assert missing.returncode == 2 and "no such file" in missing.stderr


@pytest.mark.parametrize(
    ("command", "remote"),
    [
        (["corpus", "build"], "gs://commoncrawl/crawl-data/x.warc.gz"),
        (["classifier", "train"], "hdfs://namenode/crawl/x.warc.gz"),
    ],
)
def test_unsupported_remote_inputs_are_refused_before_spark_starts(capsys, tmp_path, command, remote):
    from pyspark import SparkContext

    gateway, context = SparkContext._gateway, SparkContext._active_spark_context
    paths = tmp_path / "warc.paths"
    paths.write_text(f"{remote}\n")
    out = tmp_path / "out"
    assert main([*command, "--input", str(paths), "--output", str(out)]) == 2
    scheme = remote.split("://")[0]
    assert f"{scheme}:// inputs are not supported (remote inputs can be s3://" in capsys.readouterr().err
    # no JVM was launched for it, and a session another test holds was neither joined nor stopped
    assert SparkContext._gateway is gateway and SparkContext._active_spark_context is context
    assert not out.exists()


# ---------------------------------------------------------------- sample-crawl and classifier train


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """`mathforge sample-crawl`: 2 WARC files of 40 captures; returns its warc.paths."""
    out = tmp_path_factory.mktemp("sample-crawl")
    result = mathforge("sample-crawl", "--out", str(out), "--files", "2", "--records", "40", "--seed", "5")
    assert result.returncode == 0, result.stderr[-2000:]
    paths = Path(result.stdout.strip())
    assert paths == out / "warc.paths"
    return paths


def test_sample_crawl_command_writes_the_crawl_its_manifest_describes(sample, tmp_path):
    names = sample.read_text().split()
    manifest = json.loads((sample.parent / "sample_manifest.json").read_text())
    assert len(names) == 2 and manifest["files"] == names
    assert (manifest["n_files"], manifest["records_per_file"], manifest["seed"]) == (2, 40, 5)
    # the command's options reach the generator: the same files as the library call with the same arguments
    again = write_sample_crawl(tmp_path, n_files=2, records_per_file=40, seed=5)
    for name in names:
        assert filecmp.cmp(sample.parent / name, again.parent / name, shallow=False), name
    # and the reader keeps exactly the HTML 200 responses with a body (a charset lie or broken markup is
    # the extractor's problem, not the reader's)
    pages = {
        r["record_id"]
        for r in manifest["records"]
        if r["warc_type"] == "response"
        and r["http_status"] == 200
        and r["content_type"].startswith("text/html")
        and r["broken"] not in ("empty_body", "truncated")
    }
    read = {r.record_id for name in names for r in read_html_responses(str(sample.parent / name), Counter())}
    assert read == pages and len(pages) > 40


@pytest.fixture(scope="module")
def trained(sample, tmp_path_factory) -> tuple[Path, dict]:
    """`mathforge classifier train` on the sample crawl (seeds bootstrapped from its math markup)."""
    model = tmp_path_factory.mktemp("model") / "math.bin"
    result = mathforge(
        "classifier", "train", "--input", str(sample), "--output", str(model),
        "--epoch", "15", "--bucket", "20000", "--master", "local[1]",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return model, json.loads(result.stdout)


@pytest.mark.spark
@pytest.mark.slow
def test_classifier_train_command_writes_a_model_that_tells_math_from_prose(trained):
    model, report = trained
    sidecar = json.loads(model.with_suffix(".json").read_text())
    assert report["seed_source"] == "bootstrap" and report["version"] == sidecar["version"]
    assert sidecar["params"]["epoch"] == 15 and sidecar["params"]["bucket"] == 20000
    assert report["counters"]["seed:math"] > 5 and report["counters"]["seed:other"] > 5
    math_page = (
        "<html><body><article><p>Solve $x^2 - 5x + 6 = 0$. Factor: $(x-2)(x-3)=0$, so $x=2$ or $x=3$. "
        "The discriminant is $b^2-4ac = 1$ and $$x = \\frac{5 \\pm 1}{2}.$$</p></article></body></html>"
    )
    prose_page = (
        "<html><body><article><p>We drove along the coast for three days and ate grilled sardines in "
        "small fishing villages, swimming every morning.</p></article></body></html>"
    )
    with_model = PageAnalyser(math_scorer=math_scorer_for(str(model)))
    assert (
        with_model.analyse_html(math_page.encode()).math_score
        > with_model.analyse_html(prose_page.encode()).math_score
    )


# ---------------------------------------------------------------- corpus build: every option, end to end


def _sentences(shared_data: Path) -> dict[str, list[str]]:
    by_lang: dict[str, list[str]] = collections.defaultdict(list)
    for line in (shared_data / "langid" / "lingua_sentences_75langs_100each.tsv").open(encoding="utf-8"):
        code, _, sentence = line.rstrip("\n").partition("\t")
        by_lang[code].append(sentence)
    return by_lang


def _article(text: str, head: str = "") -> str:
    return f"<html><head>{head}<title>t</title></head><body><article><p>{text}</p></article></body></html>"


MIN_CHARS, MIN_LANG_SCORE, MAX_BODY_BYTES = 200, 0.5, 100_000


KEPT = {"en": "utf-8", "ru": "cp1251", "zh": "gb18030", "fr": "cp1252", "de": "utf-8"}  # lang -> bytes


@pytest.fixture(scope="module")
def texts(shared_data) -> dict[str, str]:
    """Eight real sentences per kept language, in characters its legacy encoding can hold."""
    s = _sentences(shared_data)
    return {
        lang: "".join(ch for ch in " ".join(s[lang][:8]) if ch.encode(codec, "ignore"))
        for lang, codec in KEPT.items()
    }


@pytest.fixture(scope="module")
def option_pages(shared_data, texts) -> dict[str, tuple[bytes, str]]:
    """url -> (body as served, Content-Type): one page per option to trip, and one per charset decision."""
    s = _sentences(shared_data)
    mixed = " ".join(  # two words at a time from eight languages: no language is likely
        " ".join(s[lang][i // 8].split()[:2])
        for i, lang in enumerate(["en", "de", "fr", "es", "it", "nl", "pt", "sv"] * 5)
    )
    return {
        "https://en.example/kept": (_article(texts["en"]).encode(), "text/html; charset=utf-8"),
        "https://ru.example/kept": (
            _article(texts["ru"]).encode("cp1251"),
            "text/html; charset=windows-1251",
        ),
        "https://zh.example/kept": (
            _article(texts["zh"], '<meta charset="gbk">').encode("gb18030"),
            "text/html",
        ),
        "https://fr.example/kept": (_article(texts["fr"]).encode("cp1252"), "text/html"),
        "https://de.example/kept": (
            b"\xef\xbb\xbf" + _article(texts["de"]).encode(),
            "text/html; charset=iso-8859-1",
        ),
        "https://short.example/dropped": (_article(s["en"][20]).encode(), "text/html; charset=utf-8"),
        "https://mixed.example/dropped": (_article(mixed).encode(), "text/html; charset=utf-8"),
        "https://huge.example/skipped": (
            _article(" ".join(s["en"] * 16)).encode(),
            "text/html; charset=utf-8",
        ),
    }


CHARSETS = {
    "https://en.example/kept": ("utf-8", "http-header"),
    "https://ru.example/kept": ("cp1251", "http-header"),
    "https://zh.example/kept": ("gb18030", "meta"),
    "https://fr.example/kept": ("cp1252", "detected"),
    "https://de.example/kept": ("utf-8-sig", "bom"),
}


def test_the_option_pages_are_what_the_test_needs(option_pages):
    """Preconditions, from the same analysis `mathforge inspect` shows: each page trips one option only."""
    analyser = PageAnalyser(min_math_score=0.0)  # the keep rule of the build below
    for url, (body, content_type) in option_pages.items():
        page = analyser.analyse_html(body, content_type, url)
        if url == "https://huge.example/skipped":
            assert len(body) > MAX_BODY_BYTES
            continue
        assert len(body) < MAX_BODY_BYTES, url
        assert (page.n_chars < MIN_CHARS) == (url == "https://short.example/dropped"), url
        assert (page.lang_score < MIN_LANG_SCORE) == (url == "https://mixed.example/dropped"), url


@pytest.mark.spark
@pytest.mark.slow
def test_corpus_build_command_honours_every_option(option_pages, texts, trained, shared_data, tmp_path):
    model, report = trained
    warc = write_response_warc(
        tmp_path / "options.warc.gz", [(url, body, ct) for url, (body, ct) in option_pages.items()]
    )
    clipped = shared_data / "warc" / "other" / "resiliparse_clipped.warc.gz"
    paths = tmp_path / "warc.paths"
    paths.write_text(f"{warc}\n{clipped}\n{tmp_path / 'gone.warc.gz'}\n")
    out = tmp_path / "corpus"
    (out / "data").mkdir(parents=True)
    (out / "data" / "part-stale.parquet").write_bytes(b"an earlier run's shard")
    argv = [
        "corpus", "build", "--input", str(paths), "--output", str(out), "--master", "local[1]",
        "--langs", "all", "--min-math-score", "0", "--math-model", str(model),
        "--min-chars", str(MIN_CHARS), "--min-lang-score", str(MIN_LANG_SCORE),
        "--max-body-bytes", str(MAX_BODY_BYTES), "--exact-dedup", "false", "--near-dedup", "false",
    ]  # fmt: skip

    result = mathforge(*argv, "--overwrite")  # (refused without it: test_build_corpus.py)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (out / "data" / "part-stale.parquet").exists()
    # the plain directory an older version wrote is replaced by the link to a new version (and the lock)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("corpus")) == [
        "corpus",
        "corpus.lock",
        "corpus.versions",
    ]
    legacy, built = sorted((tmp_path / "corpus.versions").iterdir())  # the plain directory: the previous one
    assert out.is_symlink() and out.resolve() == built and legacy.name.endswith("-legacy")
    assert (legacy / "data" / "part-stale.parquet").read_bytes() == b"an earlier run's shard"

    rows = ds.dataset(out / "data", format="parquet").to_table().to_pylist()
    assert {r["url"]: (r["charset"], r["charset_source"]) for r in rows} == CHARSETS
    for row in rows:  # each page decoded to its own text: its first sentence starts the corpus text
        lang = row["url"].split("//")[1].split(".")[0]
        assert row["lang"] == lang and row["text"].startswith(texts[lang][:12]), row["text"][:40]
    stats = json.loads((out / "stats.json").read_text())
    counters = stats["counters"]
    assert counters["drop:too_short"] == 1 and counters["drop:lang_score"] == 1
    assert counters["skip:body_too_large"] == 1 and counters["kept"] == len(CHARSETS)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["math_scorer"] == {"name": "fasttext", "version": report["version"]}
    assert manifest["config"]["overwrite"] is True and manifest["config"]["min_chars"] == MIN_CHARS

    # STATS.md names the inputs that failed, with their reasons, and only those
    report_md = (out / "STATS.md").read_text()
    assert report_md.strip() in result.stdout  # the command prints the report it writes
    assert "- inputs: 3 files, 2 with errors" in report_md
    section = report_md.split("## Inputs with errors\n", 1)[1].strip().splitlines()
    failed = {}
    for line in section:
        path, _, reasons = line.removeprefix("- `").partition("`: ")
        failed[path] = set(reasons.split(", "))
    assert failed == {
        str(tmp_path / "gone.warc.gz"): {"input_missing=1"},
        str(clipped): {"truncated_record=1", "truncated_gzip=1"},
    }
    # the missing file is not "seen": a refresh reads it once it is there; the damaged one was read to its end
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs_unfinished"] == [str(tmp_path / "gone.warc.gz")]
    assert sorted(manifest["inputs"]) == sorted([str(warc), str(clipped)])
