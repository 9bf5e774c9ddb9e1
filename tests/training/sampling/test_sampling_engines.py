"""The HTTP engine against real servers: `eval --server` against `mathforge serve` gives the verdicts of in-process
eval, `distill traces --server` writes the columns (and, greedy, the rows) of in-process traces, the tokenizer
check tells a foreign tokenizer apart and refuses to store its ids; and against a small stdlib server that
answers 429/503/400 or hangs: retries with backoff, failures counted and reported, never scored."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
from constant_teacher import constant_teacher_prompts
from hf_fixtures import hf_model, save_hf

from training.config import (
    EngineConfig,
    EvalConfig,
    ServeConfig,
    TracesConfig,
)
from training.evaluation.evaluate import evaluate, format_summary
from training.models.model_io import load_model_text
from training.objectives.traces import decode_top, write_traces
from training.sampling.interface import SamplingParams
from training.sampling.openai_engine import OpenAISampler
from training.serving.server import ModelServer, load_for_serving


@pytest.fixture(scope="module")
def task(last_number_task, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("engine_task")
    prompts = constant_teacher_prompts(last_number_task, 10)  # the teacher answers the even ones right
    paths = {**last_number_task, "prompts": root / "prompts.jsonl", "bench": root / "bench.jsonl"}
    paths["prompts"].write_text("".join(json.dumps(p) + "\n" for p in prompts))
    paths["bench"].write_text(
        "".join(json.dumps({"question": p["prompt"], "answer": p["answer"]}) + "\n" for p in prompts)
    )
    return paths


@pytest.fixture(scope="module")
def teacher(constant_teacher) -> Path:
    return constant_teacher


@pytest.fixture(scope="module")
def server(teacher):
    cfg = ServeConfig(model=str(teacher), port=0, device="cpu", batch_window_ms=5)
    with ModelServer(load_for_serving(cfg), cfg) as running:
        yield running


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_eval_through_the_server_gives_the_in_process_verdicts(teacher, task, server, tmp_path) -> None:
    common = {"model": str(teacher), "benchmark": (str(task["bench"]),), "max_new_tokens": 24, "batch_size": 4,
              "device": "cpu", "verify_workers": 1}  # fmt: skip
    local = evaluate(EvalConfig(out=str(tmp_path / "local"), **common))["bench"]
    remote = evaluate(
        EvalConfig(
            out=str(tmp_path / "remote"), engine=EngineConfig(server=server.url, concurrency=3), **common
        )
    )["bench"]
    assert remote["failed"] == 0 and remote["n"] == local["n"] == 10
    assert 0 < local["pass@1"] < 1  # a mix of right and wrong answers to compare
    assert {k: remote[k] for k in ("pass@1", "strict", "lenient", "truncated")} == {
        k: local[k] for k in ("pass@1", "strict", "lenient", "truncated")
    }
    by_id = {line["id"]: line for line in _lines(tmp_path / "local" / "bench.jsonl")}
    for line in _lines(tmp_path / "remote" / "bench.jsonl"):
        mine = by_id[line["id"]]
        assert (line["completions"], line["correct"], line["finish"]) == (
            mine["completions"],
            mine["correct"],
            mine["finish"],
        )
    engine = json.loads((tmp_path / "remote" / "eval_config.json").read_text())["engine"]
    assert engine["engine"] == "openai" and engine["tokenizer"] == "agree" and engine["requests"] == 10


def _traces(teacher: Path, task: dict, out: Path, **options) -> TracesConfig:
    settings = {"samples": 1, "max_new_tokens": 24, "temperature": 0.0, "top_p": 1.0, "chunk_prompts": 4,
                "batch_size": 2, "top_k_logprobs": 4, "device": "cpu", "verify_workers": 1, **options}  # fmt: skip
    return TracesConfig(teacher=str(teacher), prompts=str(task["prompts"]), out=str(out), **settings)


def _rows(out: Path) -> list[dict]:
    return sorted(
        ds.dataset(out, format="parquet").to_table().to_pylist(),
        key=lambda r: (r["prompt_index"], r["sample"]),
    )


def test_traces_through_the_server_have_the_in_process_columns(teacher, task, server, tmp_path) -> None:
    engine = EngineConfig(server=server.url, concurrency=4)
    write_traces(_traces(teacher, task, tmp_path / "local"))
    summary = write_traces(_traces(teacher, task, tmp_path / "remote", engine=engine))
    assert summary["failed_chunks"] == [] and summary["engine"]["tokenizer"] == "agree"
    local_table = ds.dataset(tmp_path / "local", format="parquet").to_table()
    remote_table = ds.dataset(tmp_path / "remote", format="parquet").to_table()
    assert remote_table.schema == local_table.schema
    local, remote = _rows(tmp_path / "local"), _rows(tmp_path / "remote")
    assert len(local) == len(remote) == 5  # greedy: the five answerable prompts, one completion each
    for mine, theirs in zip(local, remote, strict=True):
        top = ("teacher_top_ids", "teacher_top_logprobs")
        assert {k: v for k, v in theirs.items() if k not in top} == {
            k: v for k, v in mine.items() if k not in top
        }
        (ids_a, values_a), (ids_b, values_b) = decode_top(mine), decode_top(theirs)
        assert ids_a.shape == ids_b.shape == (len(mine["completion_ids"]), 4)
        assert (ids_a[:, 0] == ids_b[:, 0]).all()
        np.testing.assert_allclose(values_a, values_b, atol=2e-2)
    # sampled through the server: reproducible (per-request seeds from the chunk's seed), so a resume is exact
    sampled = {"samples": 3, "temperature": 1.0, "engine": engine}
    write_traces(_traces(teacher, task, tmp_path / "s1", **sampled))
    write_traces(_traces(teacher, task, tmp_path / "s2", **sampled))
    assert _rows(tmp_path / "s1") == _rows(tmp_path / "s2")


def test_the_tokenizer_check_tells_a_foreign_tokenizer_apart(teacher, task, server, tmp_path) -> None:
    own = load_model_text(teacher)
    with OpenAISampler(server.url, tokenizer=own.tokenizer, template=own.template) as sampler:
        assert sampler.check_tokenizer().status == "agree"
        assert sampler.check_tokenizer(use_card=False).status == "agree"  # through /tokenize of probe texts
    foreign = tmp_path / "foreign"
    save_hf(hf_model("qwen2", tied=True), foreign, sharded=False, chat_template=None)
    other = load_model_text(foreign)
    with OpenAISampler(server.url, tokenizer=other.tokenizer, template=other.template) as sampler:
        assert sampler.check_tokenizer().status == "differ"
        assert sampler.check_tokenizer(use_card=False).status == "differ"
        assert not sampler.accepts_token_ids
    with pytest.raises(ValueError, match="not known to be the teacher's"):
        write_traces(_traces(foreign, task, tmp_path / "refused", engine=EngineConfig(server=server.url)))


# -- a server that misbehaves on purpose -------------------------------------------------------------------


class Stub:
    """A stdlib HTTP server answering /v1/completions from a script: "429", "503", "400", "hang" or "ok"."""

    def __init__(self, script: list[str]) -> None:
        self.script, self.attempts, self.release = list(script), 0, threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": "stub", "object": "model", "created": 0,
                                                                 "owned_by": "test"}]})  # fmt: skip
                else:
                    self._send(404, {"error": {"message": "no such route"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self.path.startswith("/v1/completions"):
                    return self._send(404, {"error": {"message": "no such route"}})
                stub.attempts += 1
                step = stub.script.pop(0) if len(stub.script) > 1 else stub.script[0]
                if step == "hang":
                    stub.release.wait(30)
                    return self._send(503, {"error": {"message": "too late"}})
                if step in ("429", "503", "400"):
                    headers = {"Retry-After": "0"} if step == "429" else {}
                    return self._send(
                        int(step), {"error": {"message": f"scripted {step}", "type": "x"}}, headers
                    )
                choices = [{"index": i, "text": "so \\boxed{42}", "finish_reason": "stop", "logprobs": None}
                           for i in range(body.get("n", 1))]  # fmt: skip
                self._send(200, {"id": "c", "object": "text_completion", "created": 0, "model": "stub",
                                 "choices": choices})  # fmt: skip

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stub_server():
    stubs: list[Stub] = []

    def start(script: list[str]) -> Stub:
        stubs.append(Stub(script))
        return stubs[-1]

    yield start
    for stub in stubs:
        stub.close()


def _sample(url: str, **options) -> tuple[list, OpenAISampler]:
    sampler = OpenAISampler(url, backoff=0.01, max_backoff=0.05, **options)
    with sampler:
        out = sampler.sample(["What is 6 times 7?"], SamplingParams(8, temperature=0.0, n=2))
    return out, sampler


def test_transient_failures_are_retried_with_backoff(stub_server) -> None:
    stub = stub_server(["429", "503", "ok"])
    (group,), sampler = _sample(stub.url)
    assert [c.text for c in group] == ["so \\boxed{42}"] * 2 and not any(c.failed for c in group)
    assert stub.attempts == 3 and sampler.stats["retries"] == 2 and sampler.stats["failed_requests"] == 0
    hung = stub_server(["hang", "ok"])
    (group,), sampler = _sample(hung.url, timeout=0.5)  # the first attempt times out, the second answers
    assert group[0].text == "so \\boxed{42}" and hung.attempts == 2 and sampler.stats["retries"] == 1


def test_a_request_that_keeps_failing_is_counted_not_dropped(stub_server) -> None:
    stub = stub_server(["503"])
    (group,), sampler = _sample(stub.url, max_retries=2)
    assert stub.attempts == 3 and sampler.stats["failed_requests"] == 1
    assert all(c.failed and "HTTP 503" in c.error and "scripted 503" in c.error for c in group)
    refused = stub_server(["400"])
    (group,), sampler = _sample(refused.url, max_retries=5)
    assert refused.attempts == 1 and group[0].failed and "HTTP 400" in group[0].error  # not retried


def test_eval_reports_questions_whose_requests_failed(teacher, task, stub_server, tmp_path) -> None:
    stub = stub_server(["503"])
    cfg = EvalConfig(
        model=str(teacher), benchmark=(str(task["bench"]),), out=str(tmp_path), limit=3, verify_workers=1,
        engine=EngineConfig(server=stub.url, max_retries=1, retry_backoff=0.01),
    )  # fmt: skip
    summary = evaluate(cfg)
    assert summary["bench"]["failed"] == 3 and summary["bench"]["n"] == 0
    assert all("HTTP 503" in line["failed"] for line in _lines(tmp_path / "bench.jsonl"))
    assert "3 failed" in format_summary(summary)
    engine = json.loads((tmp_path / "eval_config.json").read_text())["engine"]
    assert engine["tokenizer"] == "unknown" and engine["failed_requests"] == 3  # no /tokenize: text prompts
