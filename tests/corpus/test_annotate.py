"""`mathforge classifier annotate` against real servers: the stratified sample in Spark, then annotation through
training's HTTP chat client.

Two servers: a small stdlib HTTP server in this file that answers in the OpenAI shape with content the test
controls (scores, garbage that a retry fixes, garbage that stays, 503s), which shows the parse, retry, failure
and resume paths row by row; and `mathforge serve` (a subprocess) on a tiny random chat model, whose answers are
noise: the mechanics end to end, every answer unparseable, nothing guessed. The jobs run in the tests' shared
Spark session (the command line would start and stop its own).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.annotate_quality import (
    ANNOTATIONS_DIR,
    BucketCut,
    allocate_quotas,
    annotate_quality,
    bucket_cuts,
    choose_sample,
    rank_in_domains,
    read_annotations,
    read_corpus,
    row_seed,
)
from jobs.config import QualityAnnotateConfig
from training.config import EngineConfig
from training.sampling.openai_chat import chat_engine

REPO = Path(__file__).resolve().parents[2]

# -- a corpus whose text tells the judge what to answer ---------------------------------------------------------


def kind_of(i: int) -> str:
    return {0: "garble", 1: "nonsense", 2: "flaky"}.get(i % 20, f"tier{i % 6}")


LEVELS = [f"level{c}" for c in "abcdef"]  # the score in letters, for the fastText model (digits fold to 0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """240 pages: half from one big site, the rest over 11 small ones; math scores spread over [0, 1]."""
    rows = []
    for i in range(240):
        domain = "big.example" if i % 2 == 0 else f"site{i % 11}.example"
        rows.append({"id": f"id{i:04d}", "url": f"https://{domain}/{i}", "domain": domain,
                     "math_score": (i * 37 % 100) / 100.0, "text": f"page {i} {kind_of(i)} " + f"{LEVELS[i % 6]} " * 10 + "words " * 10})  # fmt: skip
    root = tmp_path_factory.mktemp("corpus") / "corpus"
    (root / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "data" / "part-0.parquet")
    return root


# -- the sample -------------------------------------------------------------------------------------------------


def test_quotas_fill_under_full_buckets_from_the_others():
    assert allocate_quotas({0: 100, 1: 100, 2: 100}, 30) == {0: 10, 1: 10, 2: 10}
    assert allocate_quotas({0: 2, 1: 100, 2: 100}, 30) == {0: 2, 1: 14, 2: 14}
    assert allocate_quotas({0: 2, 1: 3}, 30) == {0: 2, 1: 3}
    levels = {(0, 1): 5, (0, 2): 4, (0, 3): 1}  # bucket 0: 5 domains, 4 with a 2nd page, 1 with a 3rd
    assert bucket_cuts(levels, {0: 7}) == {0: BucketCut(full_rank=1, partial=2)}
    assert bucket_cuts(levels, {0: 9}) == {0: BucketCut(full_rank=2, partial=0)}
    assert bucket_cuts(levels, {0: 10}) == {0: BucketCut(full_rank=3, partial=0)}  # everything the caps allow


@pytest.mark.spark
def test_sample_is_stratified_capped_per_domain_and_reproducible(spark, corpus):
    df = read_corpus(spark, str(corpus))

    def draw(seed: int, size: int = 40, cap: int = 3) -> tuple[list[tuple[str, int]], dict]:
        ranked = rank_in_domains(df, 5, cap, seed).persist()
        try:
            chosen, strata = choose_sample(ranked, size)
            return sorted((r.id, r.bucket) for r in chosen.collect()), strata
        finally:
            ranked.unpersist()

    sample, strata = draw(0)
    assert len(sample) == 40 and len({i for i, _ in sample}) == 40
    rows = {r.id: r for r in df.collect()}
    per_stratum = Counter((b, rows[i].domain) for i, b in sample)
    assert max(per_stratum.values()) <= 3  # one site gives at most 3 pages to a bucket
    assert all(b == min(int(rows[i].math_score * 5), 4) for i, b in sample)
    assert (
        sorted(Counter(b for _, b in sample).values()) == [8] * 5
    )  # equal quotas: every bucket is full enough
    in_stratum = Counter((min(int(r.math_score * 5), 4), r.domain) for r in rows.values())
    available = {b: sum(min(n, 3) for (bb, _), n in in_stratum.items() if bb == b) for b in range(5)}
    assert strata["available"] == available and sum(strata["quotas"].values()) == 40
    assert draw(0)[0] == sample and draw(1)[0] != sample
    assert (
        Counter(rows[i].domain for i, _ in sample)["big.example"] <= 15
    )  # 3 per bucket, not half the sample


# -- a judge that answers as the test says ----------------------------------------------------------------------


class Judge(ThreadingHTTPServer):
    """/v1/models and /v1/chat/completions in the OpenAI shape; the answer depends on the page's marker."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), JudgeHandler)
        self.asked: list[tuple[str, float, int]] = []  # (page id, temperature, seed)
        self.flaky_down = True
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class JudgeHandler(BaseHTTPRequestHandler):
    server: Judge

    def do_GET(self) -> None:
        if self.path != "/v1/models":
            return self._send(404, {"error": {"message": "no route"}})
        self._send(
            200,
            {"object": "list", "data": [{"id": "judge", "object": "model", "created": 0, "owned_by": "t"}]},
        )

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        extract = body["messages"][0]["content"].split("<extract>\n", 1)[1].split("\n</extract>", 1)[0]
        number = int(extract.split()[1])
        with self.server.lock:
            self.server.asked.append((f"id{number:04d}", body["temperature"], body["seed"]))
        if "flaky" in extract and self.server.flaky_down:
            return self._send(503, {"error": {"message": "overloaded", "type": "server_error"}})
        if "garble" in extract and body["temperature"] == 0:
            answer = "It looks fine, maybe a four."
        elif "nonsense" in extract:
            answer = "Score: 2\nScore: 4"
        else:
            tier = int(re.search(r"tier(\d)", extract).group(1)) if "tier" in extract else 5
            answer = f"The extract is worth {tier} points.\nScore: {tier}"
        self._send(200, {"id": "c", "object": "chat.completion", "created": 0, "model": "judge",
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": answer}}]})  # fmt: skip

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def judge():
    server = Judge()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.spark
def test_annotation_reads_strictly_retries_once_counts_failures_and_resumes(spark, corpus, judge, tmp_path):
    config = QualityAnnotateConfig(corpus=str(corpus), output=str(tmp_path / "ann"), sample_size=60,
                                   max_per_domain=4, batch_size=16, max_tokens=64)  # fmt: skip
    engine_config = EngineConfig(server=judge.url, concurrency=4, max_retries=1, retry_backoff=0.0)
    with chat_engine(engine_config) as engine:
        first = annotate_quality(spark, config, engine=engine)
    folder = tmp_path / "ann" / ANNOTATIONS_DIR
    table = read_annotations(folder, ["id", "status", "score", "raw_answer", "problem", "attempts", "temperature",
                                      "seed", "model", "prompt_version", "text", "math_bucket"])  # fmt: skip
    rows = {r["id"]: r for r in table.to_pylist()}
    sampled = set(pq.read_table(tmp_path / "ann" / "sample", columns=["id"])["id"].to_pylist())
    assert len(sampled) == 60
    kinds = Counter(kind_of(int(i[2:])) for i in sampled)
    flaky = {i for i in sampled if kind_of(int(i[2:])) == "flaky"}
    assert set(rows) == sampled - flaky  # failed requests are not written: left for a rerun
    run = first["this_run"]
    assert run["failed"] == len(flaky) == kinds["flaky"] and first["engine"]["retries"] == len(flaky)
    assert run["asked"] == 60 and run["already_annotated"] == 0
    assert run["retried"] == kinds["garble"] + kinds["nonsense"] and run["ok_on_retry"] == kinds["garble"]
    assert run["unparseable"] == kinds["nonsense"] == first["total"]["unparseable"]
    for doc_id, row in rows.items():
        kind = kind_of(int(doc_id[2:]))
        assert row["model"] == "judge" and row["prompt_version"] == "finemath-additive-v1"
        assert row["text"].startswith(f"page {int(doc_id[2:])} ")
        if kind == "nonsense":  # unparseable twice: kept with its raw answer and the reason, no score
            assert row["status"] == "unparseable" and row["score"] is None and row["attempts"] == 2
            assert (
                row["raw_answer"] == "Score: 2\nScore: 4"
                and row["problem"] == "more than one line states a score"
            )
        elif kind == "garble":  # unparseable at temperature 0, read on the retry (another seed, warmer)
            assert (row["status"], row["score"], row["attempts"], row["temperature"]) == ("ok", 5, 2, 0.7)
            assert row["seed"] == row_seed(doc_id, 0, 1)
        else:
            assert (row["status"], row["score"], row["attempts"]) == ("ok", int(kind[4:]), 1)
            assert row["temperature"] == 0.0 and row["seed"] == row_seed(doc_id, 0, 0)
    assert first["total"]["score_histogram"] == {str(k): sum(1 for r in rows.values() if r["score"] == k)
                                                 for k in range(6)}  # fmt: skip
    assert json.loads((tmp_path / "ann" / "summary.json").read_text())["this_run"] == run

    # the rerun: the sample is kept, annotated ids are skipped, only the failed rows are asked again
    judge.flaky_down = False
    judge.asked.clear()
    with chat_engine(engine_config) as engine:
        second = annotate_quality(spark, config, engine=engine)
    assert {doc_id for doc_id, _, _ in judge.asked} == flaky
    assert second["this_run"]["already_annotated"] == len(rows) and second["this_run"]["failed"] == 0
    ids = read_annotations(folder, ["id"])["id"].to_pylist()
    assert len(ids) == len(set(ids)) and set(ids) == sampled
    assert second["total"]["annotated"] == 60


# -- mathforge serve on a tiny random chat model ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_chat_server(tmp_path_factory):
    """`mathforge serve` on a random Qwen2 with a ChatML template (tests/training/hf_fixtures.py), with room
    for the rubric in its context."""
    sys.path.append(str(REPO / "tests" / "training"))  # appended: the real packages stay first
    from hf_fixtures import CHATML, hf_model, save_hf

    path = tmp_path_factory.mktemp("judge") / "tiny-chat"
    model = hf_model("qwen2", tied=False)
    model.config.max_position_embeddings = 4096
    save_hf(model, path, sharded=False, chat_template=CHATML)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mathforge.cli", "serve", "--model", str(path), "--port", "0", "--device", "cpu"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    line = proc.stdout.readline()
    if "mathforge serve:" not in line:
        proc.kill()
        pytest.fail(f"the server did not start: {line}{proc.stderr.read()[-3000:]}")
    yield line.split(" at ")[1].split()[0]
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.spark
def test_annotation_through_mathforge_serve(spark, corpus, tiny_chat_server, tmp_path):
    config = QualityAnnotateConfig(corpus=str(corpus), output=str(tmp_path / "ann"), sample_size=4, max_tokens=6,
                                   max_chars=120)  # fmt: skip
    with chat_engine(EngineConfig(server=tiny_chat_server, concurrency=2, max_retries=0)) as engine:
        summary = annotate_quality(spark, config, engine=engine)
    assert summary["model"] == "tiny-chat" and summary["engine"]["requests"] == 8
    assert summary["this_run"] == {"sample_rows": 4, "already_annotated": 0, "asked": 4, "ok": 0, "ok_on_retry": 0,
                                   "retried": 4, "unparseable": 4, "failed": 0}  # fmt: skip
    rows = read_annotations(tmp_path / "ann" / ANNOTATIONS_DIR, ["status", "score", "problem", "max_tokens"])
    assert rows.num_rows == 4
    for row in rows.to_pylist():  # the random model's noise: kept, counted, never read as a score
        assert (
            row["status"] == "unparseable"
            and row["score"] is None
            and row["problem"]
            and row["max_tokens"] == 6
        )


def test_annotate_command_flags_and_an_early_error(capsys, tmp_path):
    """The command line builds both configs from one set of flags, and a missing corpus fails before any server
    is asked or Spark started."""
    from mathforge.cli import build_parser, main
    from typedconfig import dataclass_from_args

    argv = ["classifier", "annotate", "--corpus", str(tmp_path / "none"), "--output", str(tmp_path / "o"),
            "--sample-size", "7", "--server", "http://127.0.0.1:9/v1", "--concurrency", "3", "--max-tokens", "9"]  # fmt: skip
    args = build_parser().parse_args(argv)
    config, engine = dataclass_from_args(QualityAnnotateConfig, args), dataclass_from_args(EngineConfig, args)
    assert (config.sample_size, config.max_tokens, engine.concurrency, engine.server) == (7, 9, 3, argv[9])
    assert main(argv) == 2
    assert "corpus not found" in capsys.readouterr().err


@pytest.mark.spark
def test_a_quality_model_scores_a_corpus_in_spark(spark, corpus, tmp_path):
    from classifiers.quality import QualityFastTextOptions, train_fasttext_quality
    from jobs.config import QualityScoreConfig
    from jobs.score_quality import score_quality

    texts = [f"{LEVELS[i % 6]} " * 5 + "words " * 5 for i in range(300)]
    model = tmp_path / "quality.bin"
    train_fasttext_quality(texts, [i % 6 for i in range(300)], model, QualityFastTextOptions(threads=1))
    config = QualityScoreConfig(corpus=str(corpus), model=str(model), output=str(tmp_path / "scores"))
    summary = score_quality(spark, config)
    scores = {r["id"]: r["quality_score"] for r in pq.read_table(tmp_path / "scores").to_pylist()}
    assert summary["rows"] == len(scores) == 240
    by_level = [[v for k, v in scores.items() if int(k[2:]) % 6 == level] for level in range(6)]
    means = [sum(values) / len(values) for values in by_level]
    assert means == sorted(means) and means[5] - means[0] > 3
    assert summary["at_least_3"] == sum(1 for v in scores.values() if v >= 2.5)
    with pytest.raises(FileExistsError):
        config.preflight()  # an existing output is never overwritten
