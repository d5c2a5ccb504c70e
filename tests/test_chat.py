"""Chat rendering and loss masks: exactly the assistant turns are trained."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fixtures_models import *  # noqa: F403  (session fixtures until conftest imports them)

from backends.chat import (
    EncodedChat,
    encode_chat,
    encode_dataset,
    load_tokenizer,
    read_jsonl,
    render_chat,
    render_prompt,
    resolve_template,
    stop_strings,
)
from mlx_rsi.errors import DatasetError, UsageError

CALL = {
    "id": "c1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


def three_turn_chat() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"t": 21}'},
        {"role": "assistant", "content": "It is 21 C."},
        {"role": "user", "content": "And tomorrow?"},
        {"role": "assistant", "content": "Also 21 C."},
    ]


CALL_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def runs(tokenizer: Any, encoded: EncodedChat) -> tuple[list[str], list[str]]:
    """Decoded text of the contiguous trained runs and of the untrained runs."""
    trained: list[str] = []
    untrained: list[str] = []
    current: list[int] = []
    state = None
    for token, flag in [*zip(encoded.ids, encoded.mask, strict=True), (None, None)]:
        if flag != state and current:
            (trained if state else untrained).append(tokenizer.decode(current))
            current = []
        if token is not None:
            current.append(token)
        state = flag
    return trained, untrained


@pytest.fixture(scope="module")
def tok(tiny_tokenizer_dir: Path) -> Any:
    return load_tokenizer(tiny_tokenizer_dir)


@pytest.fixture(scope="module")
def plain_tok(tiny_llama_nochat_dir: Path) -> Any:
    return load_tokenizer(tiny_llama_nochat_dir)


def test_native_template_masks_exactly_every_assistant_turn(tok: Any) -> None:
    chat = three_turn_chat()
    encoded = encode_chat(tok, chat, tools=TOOLS)
    text = tok.apply_chat_template(chat, tools=TOOLS, tokenize=False)
    assert encoded.ids == tok(text, add_special_tokens=False).input_ids
    assert len(encoded.mask) == len(encoded.ids) and not encoded.truncated
    trained, untrained = runs(tok, encoded)
    assert trained == [
        f"Let me check.\n{CALL_TEXT}<|im_end|>",
        "It is 21 C.<|im_end|>",
        "Also 21 C.<|im_end|>",
    ]
    assert "".join(untrained) + "".join(trained) != text  # interleaved, not appended
    rebuilt = "".join(u + t for u, t in zip(untrained, [*trained, ""], strict=False))
    assert rebuilt == text
    assert all("<|im_start|>assistant\n" not in t for t in trained)
    assert untrained[-1] == "\n"


def test_weight_zero_and_last_assistant(tok: Any) -> None:
    chat = three_turn_chat()
    chat[2]["weight"] = 0
    trained, _ = runs(tok, encode_chat(tok, chat, tools=TOOLS))
    assert trained == ["It is 21 C.<|im_end|>", "Also 21 C.<|im_end|>"]
    trained, _ = runs(tok, encode_chat(tok, three_turn_chat(), train_on="last_assistant"))
    assert trained == ["Also 21 C.<|im_end|>"]


def test_chatml_fallback_matches_the_chatml_template(tok: Any) -> None:
    for tools in (None, TOOLS):
        native = encode_chat(tok, three_turn_chat(), tools=tools)
        fallback = encode_chat(tok, three_turn_chat(), template="chatml", tools=tools)
        assert fallback == native
    prompt = render_prompt(tok, three_turn_chat()[:2], template="chatml")
    assert prompt == tok.apply_chat_template(
        three_turn_chat()[:2], tokenize=False, add_generation_prompt=True
    )


def test_alpaca_fallback_on_a_tokenizer_without_template(plain_tok: Any) -> None:
    chat = three_turn_chat()
    assert resolve_template(plain_tok, "auto", "alpaca") == "alpaca"
    text, spans = render_chat(plain_tok, chat, tools=TOOLS)
    tools_line = json.dumps(TOOLS[0])
    assert text == (
        f"Be brief.\n\nYou can call these tools:\n<tools>\n{tools_line}\n</tools>\n\n"
        "### Instruction:\nWeather in Paris?\n\n"
        f"### Response:\nLet me check.\n{CALL_TEXT}<|endoftext|>\n\n"
        '### Input:\n{"t": 21}\n\n'
        "### Response:\nIt is 21 C.<|endoftext|>\n\n"
        "### Instruction:\nAnd tomorrow?\n\n"
        "### Response:\nAlso 21 C.<|endoftext|>\n\n"
    )
    assert [text[a:b] for a, b in spans] == [
        f"Let me check.\n{CALL_TEXT}<|endoftext|>",
        "It is 21 C.<|endoftext|>",
        "Also 21 C.<|endoftext|>",
    ]
    trained, _ = runs(plain_tok, encode_chat(plain_tok, chat, tools=TOOLS))
    assert trained == [text[a:b] for a, b in spans]
    prompt = render_prompt(plain_tok, [{"role": "user", "content": "Hi"}])
    assert prompt == f"{'Below is an instruction'}" + prompt[len("Below is an instruction") :]
    assert prompt.endswith("\n\n### Instruction:\nHi\n\n### Response:\n")
    assert {"### Instruction:", "### Response:", "<|endoftext|>"} <= set(stop_strings(plain_tok))


def test_cutoff_keeps_the_beginning_and_reports_skips(tok: Any) -> None:
    chat = three_turn_chat()
    full = encode_chat(tok, chat)
    first_trained = full.mask.index(True)
    cut = encode_chat(tok, chat, cutoff_len=first_trained + 3)
    assert cut.truncated and cut.ids == full.ids[: first_trained + 3]
    assert cut.mask == full.mask[: first_trained + 3] and cut.num_trained == 3
    rows = [{"messages": chat}, {"messages": chat, "tools": TOOLS}]
    dataset = encode_dataset(tok, rows, cutoff_len=first_trained)
    assert dataset.examples == [] and dataset.skipped == 2 and dataset.truncated == 2
    dataset = encode_dataset(tok, rows, cutoff_len=4096)
    assert len(dataset.examples) == 2 and dataset.skipped == 0
    assert dataset.trained_tokens == sum(e.num_trained for e in dataset.examples) > 0


def test_template_resolution_errors(tok: Any, plain_tok: Any) -> None:
    assert resolve_template(tok, "auto", "alpaca") == "native"
    assert resolve_template(tok, "alpaca", "chatml") == "alpaca"
    with pytest.raises(UsageError, match="unknown chat template 'vicuna'") as info:
        resolve_template(tok, "vicuna", "alpaca")
    assert "alpaca" in str(info.value.hint) and "chatml" in str(info.value.hint)
    with pytest.raises(UsageError, match="no chat template"):
        resolve_template(plain_tok, "native", "alpaca")
    with pytest.raises(UsageError, match="unknown fallback"):
        resolve_template(plain_tok, "auto", "llama9")
    with pytest.raises(DatasetError, match="message 1 has role 'robot'"):
        encode_chat(tok, [{"role": "user", "content": "x"}, {"role": "robot", "content": "y"}])


def test_read_jsonl_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"messages": []}\n\n{"messages": [}\n')
    with pytest.raises(DatasetError, match=r"train\.jsonl:3: not valid JSON"):
        read_jsonl(path)
    path.write_text('{"messages": [{"role": "user", "content": "x"}]}\n{"text": "y"}\n')
    with pytest.raises(DatasetError, match=r"train\.jsonl:2: expected an object"):
        read_jsonl(path)
    with pytest.raises(DatasetError, match="cannot read"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_masks_survive_trimmed_offsets(tiny_qwen2_dir: Path) -> None:
    # transformers loads the qwen2 tokenizer with Qwen's regex and ByteLevel(trim_offsets=True).
    qwen_tok = load_tokenizer(tiny_qwen2_dir)
    chat = [*three_turn_chat(), {"role": "user", "content": "ok"}]
    chat[-2]["content"] = "  Also  21 C.\n\n"
    trained, _ = runs(qwen_tok, encode_chat(qwen_tok, chat, tools=TOOLS))
    assert trained == [
        f"Let me check.\n{CALL_TEXT}<|im_end|>",
        "It is 21 C.<|im_end|>",
        "  Also  21 C.\n\n<|im_end|>",
    ]


@pytest.mark.parametrize("name", ["alpaca", "chatml"])
@pytest.mark.parametrize("with_tools", [False, True])
def test_fallback_jinja_renders_like_the_fallback(
    name: str, with_tools: bool, tok: Any, plain_tok: Any
) -> None:
    from backends.chat import fallback_chat_template

    tools = TOOLS if with_tools else None
    chats = [three_turn_chat(), three_turn_chat()[1:], [{"role": "user", "content": "hi"}]]
    for tokenizer in (tok, plain_tok):
        template = fallback_chat_template(tokenizer, name)
        for chat in chats:
            want, _ = render_chat(tokenizer, chat, template=name, tools=tools)
            got = tokenizer.apply_chat_template(
                chat, tools=tools, tokenize=False, chat_template=template
            )
            assert got == want
            prompt = tokenizer.apply_chat_template(
                chat[:-1] or chat, tools=tools, tokenize=False, add_generation_prompt=True,
                chat_template=template,
            )  # fmt: skip
            assert prompt == render_prompt(tokenizer, chat[:-1] or chat, template=name, tools=tools)


def test_generated_text_is_cut_at_the_first_stop(tok: Any) -> None:
    from backends.chat import cut_at_stop

    stops = stop_strings(tok, template="alpaca")
    assert cut_at_stop("Paris.### Input: more<|im_end|>x", stops) == "Paris."
    assert cut_at_stop("b<|im_end|>a### Response:", ["### Response:", "<|im_end|>"]) == "b"
    assert cut_at_stop("no stop here", stops) == "no stop here"
    assert cut_at_stop("kept", ["", "zz"]) == "kept"  # an empty stop string cuts nothing


def test_a_fused_tokenizer_gets_the_template_it_was_trained_with(
    tiny_tokenizer_dir: Path, tiny_llama_nochat_dir: Path
) -> None:
    from backends.chat import apply_trained_template, fallback_chat_template, has_chat_template

    native = load_tokenizer(tiny_tokenizer_dir)
    own = native.chat_template
    for trained in ("native", None):  # its own template stays when native or unknown
        apply_trained_template(native, trained, "alpaca")
        assert native.chat_template == own
    apply_trained_template(native, "chatml", "alpaca")
    assert native.chat_template == fallback_chat_template(native, "chatml")
    plain = load_tokenizer(tiny_llama_nochat_dir)
    apply_trained_template(plain, None, "alpaca")  # unknown, no template: the fallback
    assert has_chat_template(plain)
    assert plain.chat_template == fallback_chat_template(plain, "alpaca")
    with pytest.raises(UsageError, match="unknown fallback template"):
        apply_trained_template(plain, "vicuna", "alpaca")
