"""Prompt templates: the r1 and plain formats, jinja2 chat templates rendered as transformers renders them,
splitting conversations into SFT prompt/completion pairs, and resolving a template from a spec."""

from __future__ import annotations

import json

import pytest

from training.models.prompts import PromptTemplate, read_tokenizer_config, resolve_template

# The Qwen2.5 chat template (ChatML, default system prompt) without its tool-calling branches.
CHATML = """{%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
{%- else %}
    {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role not in ['system', 'user', 'assistant'] %}
        {{- raise_exception('unknown role ' + message.role) }}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant") %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# Plain `{% %}` tags on their own lines: the output depends on trim_blocks and lstrip_blocks.
LINES = """{{ bos_token }}
{% for message in messages %}
    {% if message.role == 'user' %}
[INST] {{ message.content | trim }} [/INST]
    {% else %}
{{ message.content }}{{ eos_token }}
    {% endif %}
{% endfor %}
"""

CONVERSATION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is 2+3?"},
    {"role": "assistant", "content": "<think>2+3=5</think> \\boxed{5}"},
]


def chatml(**kwargs) -> PromptTemplate:
    return PromptTemplate(kind="chat", chat_template=CHATML, eos_token="<|endoftext|>", **kwargs)


def test_r1_prompt_and_split() -> None:
    template = resolve_template("r1", eos_token="<|eos|>")
    prompt = template.render_prompt("What is 2+3?")
    assert prompt == (
        "The assistant reasons step by step inside <think> </think>, then gives the final answer in "
        "\\boxed{}.\nUser: What is 2+3?\nAssistant: <think>"
    )
    assert prompt.count("\n") == 2
    assert template.render_prompt([{"role": "user", "content": "What is 2+3?"}]) == prompt
    split_prompt, completion = template.split_conversation(CONVERSATION)
    assert split_prompt == "Answer briefly.\nUser: What is 2+3?\nAssistant: <think>"
    assert completion == "2+3=5</think> \\boxed{5}<|eos|>"  # the prompt already opened <think>
    assert template.completion_suffix == "<|eos|>" and template.stop_strings() == ["<|eos|>"]
    with pytest.raises(ValueError, match="one user question"):
        template.render_prompt([*CONVERSATION, {"role": "user", "content": "And 3+4?"}])


def test_plain_template_is_the_question_itself() -> None:
    template = resolve_template("plain")
    assert template.render_prompt("Let x = 2. Then") == "Let x = 2. Then"
    assert template.split_conversation(CONVERSATION[1:])[1] == CONVERSATION[2]["content"]
    assert template.completion_suffix == "" and template.stop_strings() == []


def test_chatml_rendering_matches_the_hand_written_string() -> None:
    template = chatml()
    assert template.render_prompt("What is 2+3?") == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+3?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert template.render_prompt(CONVERSATION[:2]) == (
        "<|im_start|>system\nAnswer briefly.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+3?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert template.completion_suffix == "<|im_end|>"
    assert template.stop_strings() == ["<|im_end|>", "<|endoftext|>"]
    assert template.renders_special_tokens
    with pytest.raises(Exception, match="unknown role tool"):
        template.render_prompt([{"role": "tool", "content": "42"}])


def test_split_conversation_round_trip() -> None:
    template = chatml()
    multi_turn = [
        *CONVERSATION,
        {"role": "user", "content": "And 3+4?"},
        {"role": "assistant", "content": "\\boxed{7}"},
    ]
    for messages in (CONVERSATION, multi_turn):
        prompt, completion = template.split_conversation(messages)
        assert prompt == template.render_prompt(messages[:-1])
        assert completion == messages[-1]["content"] + "<|im_end|>"  # the template's trailing newline is cut
        full = template.render_chat(messages, add_generation_prompt=False)
        assert full == prompt + completion + "\n"
    with pytest.raises(ValueError, match="no assistant turn"):
        template.split_conversation(CONVERSATION[:2])
    with pytest.raises(ValueError, match="after the last assistant turn"):
        template.split_conversation([*CONVERSATION, {"role": "user", "content": "more"}])


def test_split_conversation_refuses_a_template_whose_prompt_is_not_a_prefix() -> None:
    counting = (
        "{{ messages | length }} turns\n{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    )
    template = PromptTemplate(kind="chat", chat_template=counting, eos_token="</s>")
    with pytest.raises(ValueError, match="does not start with its rendering of the prompt"):
        template.split_conversation(CONVERSATION)


def test_rendering_equals_transformers_apply_chat_template() -> None:
    import transformers
    from tokenizers import Tokenizer, models

    vocab = {"<s>": 0, "</s>": 1, "<unk>": 2, "<|im_start|>": 3, "<|im_end|>": 4}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    messages = [
        {"role": "system", "content": "Réponds <vite> & bien."},
        {"role": "user", "content": "  What is 2+3?  "},
        {"role": "assistant", "content": "5"},
        {"role": "user", "content": "And 3+4?"},
    ]
    tojson = "{% for m in messages %}{{ m | tojson }}\n{% endfor %}"
    for source in (CHATML, LINES, tojson):
        tokenizer = transformers.PreTrainedTokenizerFast(
            tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
        )
        tokenizer.chat_template = source
        ours = PromptTemplate(kind="chat", chat_template=source, bos_token="<s>", eos_token="</s>")
        for add in (True, False):
            expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add)
            assert ours.render_chat(messages, add_generation_prompt=add) == expected
    assert '"Réponds <vite> & bien."' in ours.render_prompt(messages)  # no ASCII or HTML escaping


def test_template_dict_round_trip() -> None:
    for template in (chatml(bos_token=None, special_tokens={"pad_token": "<|pad|>"}), resolve_template("r1")):
        stored = json.loads(json.dumps(template.to_dict()))
        again = PromptTemplate.from_dict(stored)
        assert again == template
        assert again.render_prompt("q") == template.render_prompt("q")
    with pytest.raises(ValueError, match="unknown prompt template fields"):
        PromptTemplate.from_dict({"kind": "r1", "colour": "red"})
    with pytest.raises(ValueError, match="kind"):
        PromptTemplate(kind="alpaca")


def test_resolve_template(tmp_path) -> None:
    config = {
        "chat_template": CHATML,
        "eos_token": {"content": "<|im_end|>", "__type": "AddedToken"},
        "bos_token": None,
        "pad_token": "<|endoftext|>",
    }
    auto = resolve_template("auto", config)
    assert auto.kind == "chat" and auto.eos_token == "<|im_end|>" and auto.source == "tokenizer"
    assert auto.special_tokens == {"pad_token": "<|endoftext|>"}
    named = resolve_template(
        "auto",
        {"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": CHATML}]},
    )
    assert named.chat_template == CHATML
    fallback = resolve_template("auto", {"eos_token": "</s>"})
    assert fallback.kind == "r1" and fallback.eos_token == "</s>"
    assert resolve_template("auto", None, eos_token="<|eos|>").completion_suffix == "<|eos|>"
    path = tmp_path / "chatml.jinja"
    path.write_text(CHATML)
    from_file = resolve_template(str(path), config)
    assert from_file.kind == "chat" and from_file.source == str(path)
    assert from_file.render_prompt("hi") == auto.render_prompt("hi")
    with pytest.raises(FileNotFoundError):
        resolve_template(str(tmp_path / "missing.jinja"))
    with pytest.raises(ValueError, match="unknown prompt template 'alpaca'"):
        resolve_template("alpaca")
    with pytest.raises(ValueError, match="does not compile"):
        PromptTemplate(kind="chat", chat_template="{% for m in messages %}")
    # transformers 5 keeps the template in chat_template.jinja next to tokenizer_config.json
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>"}))
    (tmp_path / "chat_template.jinja").write_text(CHATML)
    assert resolve_template("auto", read_tokenizer_config(tmp_path)).chat_template == CHATML
    assert read_tokenizer_config(tmp_path / "nowhere") is None
