"""`mathforge serve`: an OpenAI-compatible HTTP server for any model mathforge loads (standard library only).

Endpoints: `GET /v1/models` (the served name, `max_model_len`, and two mathforge extensions the HTTP engine
reads: `tokenizer_sha`, the vocabulary digest, and `weights_sha`, the digest `distill traces` stores as
`teacher_sha`), `POST /v1/completions`, `POST /v1/chat/completions` (the model's prompt template renders the
messages), `POST /tokenize` (vLLM's shape), `GET /health` (status and batching counters). One thread per
connection parses and checks a request; the batcher (batcher.py) runs the jobs of concurrent requests
together. Text prompts are framed as the model saw text in training (BOS first, or a chat rendering with its
own special tokens); vLLM's `add_special_tokens` overrides that. Each row gets `max_tokens` at most, fewer
where its prompt leaves less room in the context (as in process); a prompt longer than the context is a 400.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import torch

from training.config import ServeConfig
from training.distributed import param_digest
from training.models.model_io import LoadedModel, load_model
from training.models.tokenizer import encode_prompt, n_token_ids, vocabulary_digest
from training.sampling.builtin import BuiltinSampler
from training.serving.batcher import Batcher, ServingEngine
from training.serving.protocol import (
    Limits,
    RequestError,
    chat_response,
    completion_response,
    parse_chat,
    parse_completion,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024 * 1024


class ModelServer:
    """A loaded model behind the OpenAI API: `start()` listens (port 0: any free one), `url` says where."""

    def __init__(self, loaded: LoadedModel, cfg: ServeConfig, name: str | None = None) -> None:
        self.loaded, self.cfg = loaded, cfg
        self.name = name or cfg.served_model_name or Path(cfg.model).name
        self.sampler = BuiltinSampler(loaded.model, loaded.tokenizer, loaded.template, seed=0)
        self.limits = Limits(
            self.name,
            loaded.model.cfg.max_seq_len,
            n_token_ids(loaded.tokenizer),
            cfg.max_n,
            cfg.max_logprobs,
        )
        self.card = {
            "id": self.name, "object": "model", "created": 0, "owned_by": "mathforge", "root": str(cfg.model),
            "max_model_len": self.limits.context, "tokenizer_sha": vocabulary_digest(loaded.tokenizer),
            "weights_sha": param_digest(loaded.model)[:16], "template": loaded.template.kind,
        }  # fmt: skip
        self.batcher = Batcher(ServingEngine(self.sampler), cfg.max_batch_rows, cfg.batch_window_ms / 1000.0)
        self.httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- what the handler calls -------------------------------------------------------------------------

    def encode(self, text: str, add_special_tokens: bool | None) -> list[int]:
        tokenizer, template = self.loaded.tokenizer, self.loaded.template
        if add_special_tokens is None:
            return encode_prompt(tokenizer, text, template.renders_special_tokens)
        return tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def render(self, messages: list[dict[str, str]]) -> list[int]:
        template = self.loaded.template
        return encode_prompt(
            self.loaded.tokenizer, template.render_prompt(messages), template.renders_special_tokens
        )

    def token_str(self, token_id: int) -> str:
        return self.loaded.tokenizer.decode([token_id], skip_special_tokens=False)

    def handle(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        path = path.split("?", 1)[0].rstrip("/") or "/"
        if method == "GET" and path == "/health":
            return 200, {"status": "ok", "model": self.name, **self.batcher.snapshot()}
        if method == "GET" and path == "/v1/models":
            return 200, {"object": "list", "data": [self.card]}
        if method == "GET" and path.startswith("/v1/models/"):
            if path.removeprefix("/v1/models/") != self.name:
                raise RequestError(f"The model `{path.removeprefix('/v1/models/')}` does not exist", status=404,
                                   code="model_not_found")  # fmt: skip
            return 200, self.card
        if method != "POST" or path not in (
            "/v1/completions",
            "/v1/chat/completions",
            "/tokenize",
            "/v1/tokenize",
        ):
            raise RequestError(f"no route {method} {path}", status=404)
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        if path.endswith("/tokenize"):
            return 200, self._tokenize(body)
        if path == "/v1/completions":
            request = parse_completion(body, self.limits, self.encode)
            return 200, completion_response(request, self._run(request.jobs), self.limits, self.token_str)
        request = parse_chat(body, self.limits, self.render)
        return 200, chat_response(request, self._run(request.jobs), self.limits, self.token_str)

    def _run(self, jobs: list[Any]) -> list[Any]:
        try:
            return self.batcher.submit(jobs)
        except ValueError as err:  # the engine refused the request (a bad parameter it found)
            raise RequestError(str(err)) from err

    def _tokenize(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("model") not in (None, self.name):
            raise RequestError(
                f"The model `{body['model']}` does not exist", status=404, code="model_not_found"
            )
        if isinstance(body.get("messages"), list):
            tokens = self.render(body["messages"])
        elif isinstance(body.get("prompt"), str):
            add = body.get("add_special_tokens", True)
            tokens = self.encode(body["prompt"], None if add is True else bool(add))
        else:
            raise RequestError("tokenize needs a prompt string or messages", param="prompt")
        return {"tokens": tokens, "count": len(tokens), "max_model_len": self.limits.context}

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> ModelServer:
        self.httpd = ThreadingHTTPServer((self.cfg.host, self.cfg.port), _handler_for(self))
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="mathforge-http", daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        assert self.httpd is not None, "start() first"
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def close(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
        self.batcher.close()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler_for(server: ModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._respond("GET", None)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._send(413, RequestError(f"request body over {MAX_BODY_BYTES} bytes", status=413).body())
                self.close_connection = True
                return
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError as err:
                self._send(400, RequestError(f"the request body is not JSON: {err}").body())
                return
            self._respond("POST", body)

        def _respond(self, method: str, body: Any) -> None:
            try:
                status, payload = server.handle(method, self.path, body)
            except RequestError as err:
                status, payload = err.status, err.body()
            except Exception as exc:  # a bug or a device failure: the client learns it, the server goes on
                log.exception("%s %s failed", method, self.path)
                status = 500
                payload = {"error": {"message": f"{type(exc).__name__}: {exc}", "type": "server_error",
                                     "param": None, "code": None}}  # fmt: skip
            self._send(status, payload)

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(
                status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
            )
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

    return Handler


def load_for_serving(cfg: ServeConfig) -> LoadedModel:
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device == "cuda" else None
    loaded = load_model(cfg.model, device=device, dtype=dtype, template=cfg.template)
    loaded.model.drop_mtp()
    return loaded


def serve(cfg: ServeConfig) -> None:
    """Load the model and serve it until interrupted."""
    server = ModelServer(load_for_serving(cfg), cfg).start()
    print(
        f"mathforge serve: {server.name} at {server.url} (template {server.loaded.template.kind})", flush=True
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
