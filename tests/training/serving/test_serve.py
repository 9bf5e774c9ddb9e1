"""`mathforge serve` as a user runs it: a subprocess serving a tiny random Qwen2 model (a padded vocabulary and a
ChatML template), talked to by the official `openai` client. Models, health, completions and chat with n,
stop, seed and log-probs in the OpenAI shapes, token ids as vLLM returns them, clear errors for requests it
cannot serve, and concurrent requests batched together (an in-thread server whose counters say so)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from hf_fixtures import CHATML, SHAPE, hf_model, save_hf

from training.config import ServeConfig
from training.models.model_io import load_model
from training.models.tokenizer import encode_prompt, vocabulary_digest
from training.serving.server import ModelServer, load_for_serving

REPO = Path(__file__).resolve().parents[3]
CONTEXT = SHAPE["max_position_embeddings"]


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("serve") / "qwen-chat"
    save_hf(hf_model("qwen2", tied=False), path, sharded=False, chat_template=CHATML)
    return path


@pytest.fixture(scope="module")
def server(qwen_dir):
    """`mathforge serve --port 0` in a subprocess; its first stdout line says where it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mathforge.cli", "serve", "--model", str(qwen_dir), "--port", "0",
         "--device", "cpu", "--batch-window-ms", "20"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    line = proc.stdout.readline()
    if "mathforge serve:" not in line:
        proc.kill()
        pytest.fail(f"the server did not start: {line}{proc.stderr.read()[-3000:]}")
    url = line.split(" at ")[1].split()[0]
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server, api_key="unused", max_retries=0, timeout=120)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def test_models_and_health(server, client, qwen_dir) -> None:
    (card,) = client.models.list().data
    assert card.id == "qwen-chat" and card.owned_by == "mathforge"
    local = load_model(qwen_dir)
    assert card.model_extra["max_model_len"] == CONTEXT
    assert card.model_extra["tokenizer_sha"] == vocabulary_digest(local.tokenizer)
    health = _get(server.removesuffix("/v1") + "/health")
    assert health["status"] == "ok" and health["model"] == "qwen-chat"


def test_completions_with_n_seed_stop_and_logprobs(client, qwen_dir) -> None:
    local = load_model(qwen_dir)
    ask = {"model": "qwen-chat", "prompt": "Let x = 3. Then", "max_tokens": 10}
    greedy = client.completions.create(**ask, temperature=0, extra_body={"return_token_ids": True})
    (choice,) = greedy.choices
    assert choice.finish_reason == "length" and len(choice.model_extra["token_ids"]) == 10
    assert choice.model_extra["prompt_token_ids"] == encode_prompt(local.tokenizer, "Let x = 3. Then", False)
    assert greedy.usage.completion_tokens == 10
    text = choice.text
    # a stop string from the middle of the greedy text: the text before it, finish reason "stop"
    stop = next(text[i : i + 2] for i in range(2, len(text) - 2) if text.find(text[i : i + 2]) == i)
    cut = client.completions.create(**ask, temperature=0, stop=[stop], extra_body={"return_token_ids": True})
    assert cut.choices[0].text == text[: text.index(stop)] and cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].model_extra["stop_reason"] == stop
    ids = cut.choices[0].model_extra["token_ids"]
    assert choice.model_extra["token_ids"][: len(ids)] == ids and len(ids) < 10
    # n samples; a seed makes a sampled request reproducible
    sampled = [client.completions.create(**ask, temperature=1.5, n=3, seed=s) for s in (7, 7, 8)]
    texts = [[c.text for c in r.choices] for r in sampled]
    assert len(texts[0]) == 3 and [c.index for c in sampled[0].choices] == [0, 1, 2]
    assert texts[0] == texts[1] and texts[0] != texts[2]
    # log-probs: one per token, the top-3 most likely first, tokens as ids on request
    scored = client.completions.create(
        **ask,
        temperature=0,
        logprobs=3,
        extra_body={"return_tokens_as_token_ids": True, "return_token_ids": True},
    )
    lp = scored.choices[0].logprobs
    token_ids = scored.choices[0].model_extra["token_ids"]
    assert lp.tokens == [f"token_id:{t}" for t in token_ids]
    assert len(lp.token_logprobs) == len(lp.top_logprobs) == 10
    for chosen, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert len(top) == 3 and max(top, key=top.get) == chosen  # greedy picks the most likely token
        assert value == pytest.approx(top[chosen], abs=1e-4) and value < 0
        assert all(int(t.split(":")[1]) < 290 for t in top)  # padded vocabulary rows never appear
    plain = client.completions.create(**ask, temperature=0, logprobs=1)
    assert "".join(plain.choices[0].logprobs.tokens) == plain.choices[0].text


def test_chat_uses_the_models_template(client, qwen_dir) -> None:
    local = load_model(qwen_dir)
    messages = [{"role": "user", "content": "What is 2 + 3?"}]
    reply = client.chat.completions.create(
        model="qwen-chat", messages=messages, max_tokens=8, temperature=0, n=2, logprobs=True, top_logprobs=2,
        extra_body={"return_token_ids": True},
    )  # fmt: skip
    expected = local.tokenizer.encode(local.template.render_prompt(messages), add_special_tokens=False).ids
    assert "<|im_start|>assistant" in local.template.render_prompt(messages)
    assert reply.choices[0].model_extra["prompt_token_ids"] == expected
    assert reply.choices[0].message.content == reply.choices[1].message.content  # greedy: both alike
    content = reply.choices[0].logprobs.content
    assert len(content) == len(reply.choices[0].model_extra["token_ids"])
    assert all(
        len(t.top_logprobs) == 2 and t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob for t in content
    )


def test_requests_it_cannot_serve_get_clear_errors(client) -> None:
    cases = [
        ({"prompt": [5] * (CONTEXT + 1)}, "maximum context length is 64"),
        ({"prompt": "x", "temperature": -1}, "temperature"),
        ({"prompt": "x", "top_p": 0}, "top_p"),
        ({"prompt": "x", "logprobs": 50}, "logprobs must be between 0 and 20"),
        ({"prompt": [400]}, "outside the vocabulary"),
        ({"prompt": "x", "stream": True}, "streaming is not supported"),
        ({"prompt": "x", "n": 0}, "n must be between 1"),
    ]
    for extra, message in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            client.completions.create(model="qwen-chat", max_tokens=4, **extra)
        assert caught.value.status_code == 400 and message in caught.value.message, (
            extra,
            caught.value.message,
        )
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="another", prompt="x", max_tokens=4)
    with pytest.raises(openai.BadRequestError, match="assistant"):
        client.chat.completions.create(
            model="qwen-chat", messages=[{"role": "tool", "content": "x"}], max_tokens=4
        )


def test_concurrent_requests_are_batched(qwen_dir) -> None:
    """Eight requests released together are served in fewer forward batches than requests (the window is
    long and closes as soon as all eight rows are in), each exactly as it is served alone."""
    cfg = ServeConfig(model=str(qwen_dir), port=0, device="cpu", batch_window_ms=30_000, max_batch_rows=8)
    with ModelServer(load_for_serving(cfg), cfg) as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=120)
        prompts = [f"Let x = {i}. Then" for i in range(8)]
        barrier = threading.Barrier(8)

        def ask(prompt: str) -> str:
            barrier.wait()
            return (
                client.completions.create(model="qwen-chat", prompt=prompt, max_tokens=6, temperature=0)
                .choices[0]
                .text
            )

        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(ask, prompts))
        stats = server.batcher.snapshot()
        assert stats["requests"] == 8 and stats["rows"] == 8 and stats["batches"] < 8
        server.batcher.window_s = 0.0
        alone = [client.completions.create(model="qwen-chat", prompt=p, max_tokens=6, temperature=0).choices[0].text
                 for p in prompts[:2]]  # fmt: skip
        assert alone == together[:2]
