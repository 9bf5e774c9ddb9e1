"""Prompt templates: how a question (or a conversation) becomes the text a model continues.

SFT, evaluation, GRPO and `mathforge generate --chat` must format prompts identically, or a model is trained
on one format and measured on another; so every run stores its template as a small dict (`to_dict`) and
every consumer rebuilds it with `from_dict`. Three kinds:

- "r1": plain text for any tokenizer (our own byte-level BPE included): a one-line instruction, then
  `User: {question}\\nAssistant: <think>`; the completion is whatever follows (reasoning, `</think>`, the
  answer in `\\boxed{}`), ended by the tokenizer's EOS string.
- "plain": the question as is, for raw continuation.
- "chat": a Hugging Face jinja2 chat template (from an imported tokenizer_config.json or a .jinja file),
  rendered the way `transformers` renders it (sandboxed environment, trim_blocks/lstrip_blocks, the same
  globals and `tojson`), so that an imported model sees exactly the prompts it was tuned on.

Rendered text of a chat template already holds its special tokens (BOS included when the template writes
it): tokenize it without adding special tokens. For r1/plain the caller frames the text as in pretraining
(BOS first). Torch-free; jinja2 is imported only when a chat template is used.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

Message = Mapping[str, Any]  # {"role": "system" | "user" | "assistant", "content": str}

KINDS = ("r1", "plain", "chat")

R1_INSTRUCTION = (
    "The assistant reasons step by step inside <think> </think>, then gives the final answer in \\boxed{}."
)
R1_PROMPT = "{instruction}\nUser: {question}\nAssistant: <think>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

# Stands in for assistant content when finding what a chat template writes after a turn.
_SENTINEL = "MATHFORGE-SENTINEL-6f1d"


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt format. `eos_token` is the tokenizer's end-of-sequence string (ends r1/plain completions);
    `bos_token` is what chat templates see as `bos_token`; `chat_template` is the jinja2 source (kind "chat")."""

    kind: str = "r1"
    chat_template: str | None = None
    bos_token: str | None = None
    eos_token: str | None = None
    special_tokens: Mapping[str, str] = dataclasses.field(default_factory=dict)  # pad_token, unk_token, ...
    source: str | None = None  # where the chat template came from (informational)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown prompt template kind {self.kind!r}; choose one of {KINDS}")
        if (self.kind == "chat") != bool(self.chat_template):
            raise ValueError("a chat template needs its jinja2 source, and only kind 'chat' takes one")
        if self.kind == "chat":
            _compile(self.chat_template)  # fail now on a syntax error, not in the middle of a run

    # -- storage ---------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "chat_template": self.chat_template,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "special_tokens": dict(self.special_tokens),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PromptTemplate:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown prompt template fields {unknown}")
        return cls(**{**values, "special_tokens": dict(values.get("special_tokens") or {})})

    # -- rendering -------------------------------------------------------------------------------------

    @property
    def renders_special_tokens(self) -> bool:
        """True when rendered text already holds the special tokens it needs (tokenize it without adding any)."""
        return self.kind == "chat"

    def render_prompt(self, question_or_messages: str | Sequence[Message]) -> str:
        """The text the model continues: a str is one user turn; messages are [{"role", "content"}, ...]
        ending with a user turn (or a system turn)."""
        messages = _as_messages(question_or_messages)
        if messages and messages[-1]["role"] == "assistant":
            raise ValueError(
                "render_prompt: the conversation ends with an assistant turn; use split_conversation"
            )
        if self.kind == "chat":
            return self.render_chat(messages, add_generation_prompt=True)
        system, question = _single_question(messages, self.kind)
        if self.kind == "plain":
            return question if system is None else f"{system}\n{question}"
        instruction = R1_INSTRUCTION if system is None else system
        return R1_PROMPT.format(instruction=instruction, question=question)

    def split_conversation(self, messages: Sequence[Message]) -> tuple[str, str]:
        """(prompt, completion) for SFT: prompt = every turn before the last assistant turn, with the generation
        prompt; completion = the rest of the full rendering, up to and including the end-of-turn marker."""
        messages = _as_messages(messages)
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None:
            raise ValueError("split_conversation: the conversation has no assistant turn")
        if last != len(messages) - 1:
            raise ValueError(
                "split_conversation: turns after the last assistant turn would not be trained on"
            )
        prompt = self.render_prompt(messages[:last])
        answer = str(messages[last]["content"])
        if self.kind != "chat":
            if self.kind == "r1" and answer.startswith(THINK_OPEN):
                answer = answer[len(THINK_OPEN) :]  # the prompt already opened the reasoning
            return prompt, answer + (self.eos_token or "")
        full = self.render_chat(messages, add_generation_prompt=False)
        if not full.startswith(prompt):
            at = next(
                (i for i, (a, b) in enumerate(zip(prompt, full, strict=False)) if a != b),
                min(len(prompt), len(full)),
            )
            raise ValueError(
                "the chat template's rendering of the full conversation does not start with its rendering of "
                f"the prompt (they differ from character {at}: prompt {prompt[at : at + 40]!r}, "
                f"conversation {full[at : at + 40]!r}); this template cannot be split into prompt and completion"
            )
        completion = full[len(prompt) :]
        suffix = self.completion_suffix
        end = completion.rfind(suffix) if suffix else -1
        if end >= 0 and not completion[end + len(suffix) :].strip():
            completion = completion[: end + len(suffix)]  # drop whitespace the template puts after the turn
        return prompt, completion

    @functools.cached_property
    def completion_suffix(self) -> str:
        """What ends a completion: for a chat template its end-of-turn marker (what it writes after an assistant
        turn's content, e.g. `<|im_end|>`; the EOS string if it writes nothing); for r1/plain the EOS string.
        Empty when unknown (the caller then appends the EOS id itself)."""
        if self.kind != "chat":
            return self.eos_token or ""
        rendered = self.render_chat(
            [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": _SENTINEL}],
            add_generation_prompt=False,
        )
        after = (
            rendered[rendered.rfind(_SENTINEL) + len(_SENTINEL) :].strip() if _SENTINEL in rendered else ""
        )
        if after and self.eos_token and self.eos_token in after:
            return after[: after.index(self.eos_token) + len(self.eos_token)]
        return after or (self.eos_token or "")

    @functools.cached_property
    def reasoning_close(self) -> str | None:
        """`</think>` when the prompt opens the reasoning with `<think>` (r1, and chat templates that do the
        same): the final answer then belongs after it, which strict answer extraction enforces; else None."""
        return THINK_CLOSE if self.render_prompt("1+1?").rstrip().endswith(THINK_OPEN) else None

    def stop_strings(self) -> list[str]:
        """Strings that end generation: the completion suffix and the EOS string (without empties or repeats)."""
        return list(dict.fromkeys(s for s in (self.completion_suffix, self.eos_token) if s))

    def render_chat(self, messages: Sequence[Message], add_generation_prompt: bool = False) -> str:
        """The chat template's own rendering of `messages` (chat templates only)."""
        if self.chat_template is None:
            raise ValueError(f"render_chat needs a chat template, this is the {self.kind} template")
        variables = {
            **{k: v for k, v in self.special_tokens.items() if v is not None},
            "bos_token": self.bos_token or "",
            "eos_token": self.eos_token or "",
        }
        return _compile(self.chat_template).render(
            messages=_plain(list(messages)),
            tools=None,
            documents=None,
            add_generation_prompt=add_generation_prompt,
            **variables,
        )


# -- resolution ----------------------------------------------------------------------------------------


def resolve_template(
    spec: str,
    tokenizer_config: Mapping[str, Any] | None = None,
    *,
    eos_token: str | None = None,
    bos_token: str | None = None,
) -> PromptTemplate:
    """The template named by `spec`: "auto" (the tokenizer's chat template if it has one, else r1), "r1",
    "plain", or a path to a .jinja file. Special token strings come from tokenizer_config (a Hugging Face
    tokenizer_config.json as a dict) unless given here (e.g. our own tokenizer's EOS)."""
    config = dict(tokenizer_config or {})
    tokens = {
        key: _token_str(config.get(key)) for key in ("pad_token", "unk_token") if config.get(key) is not None
    }
    bos = bos_token if bos_token is not None else _token_str(config.get("bos_token"))
    eos = eos_token if eos_token is not None else _token_str(config.get("eos_token"))
    common = {"bos_token": bos, "eos_token": eos, "special_tokens": tokens}
    if spec == "auto":
        chat = chat_template_of(config)
        if chat:
            return PromptTemplate(kind="chat", chat_template=chat, source="tokenizer", **common)
        return PromptTemplate(kind="r1", **common)
    if spec in ("r1", "plain"):
        return PromptTemplate(kind=spec, **common)
    path = Path(spec)
    if path.suffix == ".jinja" or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"chat template file not found: {path}")
        return PromptTemplate(kind="chat", chat_template=path.read_text(), source=str(path), **common)
    raise ValueError(f"unknown prompt template {spec!r}: use auto, r1, plain or a path to a .jinja file")


def chat_template_of(tokenizer_config: Mapping[str, Any] | None) -> str | None:
    """The chat template of a tokenizer_config.json: a string, or the "default" entry of a list of named ones."""
    value = (tokenizer_config or {}).get("chat_template")
    if isinstance(value, list):
        named = {entry.get("name"): entry.get("template") for entry in value if isinstance(entry, Mapping)}
        value = named.get("default", next(iter(named.values()), None))
    return value or None


def read_tokenizer_config(model_dir: str | Path) -> dict[str, Any] | None:
    """tokenizer_config.json of a model directory (None if it has none), with the chat template filled in
    from chat_template.jinja where newer `transformers` versions keep it."""
    model_dir = Path(model_dir)
    path, jinja = model_dir / "tokenizer_config.json", model_dir / "chat_template.jinja"
    config = json.loads(path.read_text()) if path.is_file() else None
    if jinja.is_file() and not chat_template_of(config):
        config = {**(config or {}), "chat_template": jinja.read_text()}
    return config


# -- helpers ---------------------------------------------------------------------------------------------


def _token_str(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict with "content"."""
    if isinstance(value, Mapping):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _as_messages(question_or_messages: str | Sequence[Message]) -> list[dict[str, Any]]:
    if isinstance(question_or_messages, str):
        return [{"role": "user", "content": question_or_messages}]
    messages = [dict(m) for m in question_or_messages]
    for message in messages:
        if "role" not in message or "content" not in message:
            raise ValueError(f"a message needs 'role' and 'content', got keys {sorted(message)}")
    return messages


def _single_question(messages: list[dict[str, Any]], kind: str) -> tuple[str | None, str]:
    """(system text or None, the one user question): r1 and plain templates render a single question."""
    system = None
    if messages and messages[0]["role"] == "system":
        system, messages = str(messages[0]["content"]), messages[1:]
    if len(messages) != 1 or messages[0]["role"] != "user":
        raise ValueError(
            f"the {kind} template renders one user question (after an optional system turn), got roles "
            f"{[m['role'] for m in messages]}; use a chat template for multi-turn conversations"
        )
    return system, str(messages[0]["content"])


def _plain(value: Any) -> Any:
    """Only JSON-like data reaches the sandbox (as in transformers)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return f"<{type(value).__name__}>"


@functools.lru_cache(maxsize=16)
def _compile(source: str) -> Any:
    """The template compiled like transformers' `_compile_jinja_template` (same environment and globals)."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _Generation(jinja2.ext.Extension):
        """`{% generation %}...{% endgeneration %}` marks assistant text for masks; rendering keeps the body."""

        tags = frozenset({"generation"})

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Any) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(
        x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys=False
    ):
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    def strftime_now(fmt: str) -> str:
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    try:
        return env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as exc:
        raise ValueError(f"chat template does not compile: {exc}") from exc
