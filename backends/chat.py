"""Chat rendering and loss masking shared by both backends (needs only the HF tokenizer).

A chat is rendered to text with the tokenizer's own chat template ("native") or a named
fallback ("alpaca", "chatml"), together with the character spans of every trained assistant
turn (content, tool calls and the end-of-turn token). The text is tokenized once, with
offsets, and a token is trained when it overlaps a trained span, so the ids are exactly the
ones generation sees and the mask never depends on how turns were split.

For native templates the spans come from prefix renders: the assistant turn ``i`` is the
text ``render(messages[:i+1])`` adds to ``render(messages[:i], add_generation_prompt=True)``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlx_rsi.errors import DatasetError, ModelError, UsageError

log = logging.getLogger(__name__)

Message = dict[str, Any]
Span = tuple[int, int]

FALLBACK_TEMPLATES = ("alpaca", "chatml")
ROLES = ("system", "user", "assistant", "tool")
ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)
CHATML_END = "<|im_end|>"


@dataclass(frozen=True)
class EncodedChat:
    """Token ids of one rendered chat and, per token, whether it is trained."""

    ids: list[int]
    mask: list[bool]
    truncated: bool = False

    @property
    def num_trained(self) -> int:
        return sum(self.mask)


@dataclass(frozen=True)
class EncodedDataset:
    """The encoded, trainable examples of a split and what was dropped or cut."""

    examples: list[EncodedChat]
    skipped: int  # examples with no trained token left (after the cutoff)
    truncated: int  # examples cut at cutoff_len

    @property
    def trained_tokens(self) -> int:
        return sum(e.num_trained for e in self.examples)


def load_tokenizer(model_dir: Path) -> Any:
    """The HF tokenizer stored in ``model_dir`` (offline)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError) as e:
        raise ModelError(
            f"cannot load a tokenizer from {model_dir}: {e}",
            hint="point model_dir at an HF-layout folder with tokenizer.json",
        ) from e


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def resolve_template(tokenizer: Any, template: str, fallback: str) -> str:
    """``"native"`` for the tokenizer's own template, else the name of a fallback."""
    known = ("auto", "native", *FALLBACK_TEMPLATES)
    if fallback not in FALLBACK_TEMPLATES:
        raise UsageError(
            f"unknown fallback template '{fallback}'",
            hint=f"use one of {', '.join(FALLBACK_TEMPLATES)}",
        )
    if template not in known:
        raise UsageError(
            f"unknown chat template '{template}'", hint=f"use one of {', '.join(known)}"
        )
    if template == "auto":
        return "native" if has_chat_template(tokenizer) else fallback
    if template == "native" and not has_chat_template(tokenizer):
        raise UsageError(
            "template 'native' asked for, but the tokenizer has no chat template",
            hint=f"use template 'auto' or one of {', '.join(FALLBACK_TEMPLATES)}",
        )
    return template


_TOOLS_JINJA = (
    "{% if tools %}You can call these tools:\n<tools>\n"
    "{% for tool in tools %}{{ tool | tojson }}{{ '\\n' }}{% endfor %}</tools>{% endif %}"
)
_TOOL_CALLS_JINJA = (
    "{% for call in message.tool_calls or [] %}"
    "{% set fn = call.function if call.function is defined else call %}"
    "{% if message.content or not loop.first %}{{ '\\n' }}{% endif %}"
    "<tool_call>\n"
    '{"name": {{ fn.name | tojson }}, "arguments": '
    "{% if fn.arguments is string %}{{ fn.arguments }}"
    "{% else %}{{ fn.arguments | tojson }}{% endif %}"
    "}\n</tool_call>"
    "{% endfor %}"
)
# ChatML with Hermes-style tools; renders exactly like the "chatml" fallback.
CHATML_TEMPLATE = (
    "{% if tools %}<|im_start|>system\n"
    "{% if messages[0].role == 'system' %}{{ messages[0].content }}\n\n{% endif %}"
    + _TOOLS_JINJA
    + "<|im_end|>\n"
    "{% elif messages[0].role == 'system' %}"
    "<|im_start|>system\n{{ messages[0].content }}<|im_end|>\n"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if message.role == 'system' %}"
    "{% if not loop.first %}<|im_start|>system\n{{ message.content }}<|im_end|>\n{% endif %}"
    "{% elif message.role == 'assistant' %}"
    "<|im_start|>assistant\n{{ message.content or '' }}" + _TOOL_CALLS_JINJA + "<|im_end|>\n"
    "{% elif message.role == 'tool' %}"
    "<|im_start|>tool\n<tool_response>\n{{ message.content }}\n</tool_response><|im_end|>\n"
    "{% else %}"
    "<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_ALPACA_TEMPLATE = (
    "{% set systems = messages | selectattr('role', 'equalto', 'system') "
    "| map(attribute='content') | select | list %}"
    "{% if systems %}{{ systems | join('\\n\\n') }}{% else %}" + ALPACA_PREAMBLE + "{% endif %}"
    "{% if tools %}{{ '\\n\\n' }}" + _TOOLS_JINJA + "{% endif %}{{ '\\n\\n' }}"
    "{% for message in messages %}"
    "{% if message.role == 'user' %}### Instruction:\n{{ message.content }}{{ '\\n\\n' }}"
    "{% elif message.role == 'tool' %}### Input:\n{{ message.content }}{{ '\\n\\n' }}"
    "{% elif message.role == 'assistant' %}### Response:\n{{ message.content or '' }}"
    + _TOOL_CALLS_JINJA
    + "{{ eos_token }}{{ '\\n\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}### Response:\n{% endif %}"
)


def fallback_chat_template(tokenizer: Any, name: str) -> str:
    """A jinja chat template that renders exactly like the named fallback.

    Written into fused models trained with a fallback, so that serving, GGUF export and
    ``template: auto`` later format chats the way the model was trained.
    """
    if name not in FALLBACK_TEMPLATES:
        raise UsageError(
            f"unknown fallback template '{name}'",
            hint=f"use one of {', '.join(FALLBACK_TEMPLATES)}",
        )
    body = CHATML_TEMPLATE if name == "chatml" else _ALPACA_TEMPLATE
    return ("{{ bos_token }}" if _bos_text(tokenizer) else "") + body


def apply_trained_template(tokenizer: Any, trained: str | None, fallback: str) -> None:
    """Give a fused model's tokenizer the chat template its adapter was trained with.

    ``trained``: the recorded template ("native" or a fallback name), None when unknown;
    a tokenizer without a chat template then gets ``fallback``. Serving, GGUF export and
    ``template: auto`` then format chats as in training.
    """
    if trained is None and not has_chat_template(tokenizer):
        trained = fallback
    if trained not in (None, "native"):
        tokenizer.chat_template = fallback_chat_template(tokenizer, str(trained))


def render_prompt(
    tokenizer: Any,
    messages: Sequence[Message],
    *,
    template: str = "auto",
    fallback: str = "alpaca",
    tools: list[dict[str, Any]] | None = None,
) -> str:
    """The text to generate from: the chat followed by the assistant header."""
    name = resolve_template(tokenizer, template, fallback)
    messages = _normalize(messages)
    if name == "native":
        return _native(tokenizer, messages, tools, generation_prompt=True)
    text, _ = _render_fallback(name, tokenizer, messages, tools, set(), generation_prompt=True)
    return text


def stop_strings(tokenizer: Any, *, template: str = "auto", fallback: str = "alpaca") -> list[str]:
    """Text that ends an assistant turn (cut generated text at the first one)."""
    name = resolve_template(tokenizer, template, fallback)
    stops = [tokenizer.eos_token] if tokenizer.eos_token else []
    if name == "chatml" or (name == "native" and CHATML_END in str(tokenizer.chat_template)):
        stops.append(CHATML_END)
    if name == "alpaca":  # a base model that never learned EOS starts the next section
        stops.extend(["### Instruction:", "### Input:", "### Response:"])
    return list(dict.fromkeys(stops))


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """Generated text up to the first (non-empty) stop string."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:cut]


def render_chat(
    tokenizer: Any,
    messages: Sequence[Message],
    *,
    template: str = "auto",
    fallback: str = "alpaca",
    train_on: str = "assistant",
    tools: list[dict[str, Any]] | None = None,
) -> tuple[str, list[Span]]:
    """The full chat text and the character spans of its trained assistant turns."""
    name = resolve_template(tokenizer, template, fallback)
    messages = _normalize(messages)
    trained = _trained_indices(messages, train_on)
    if name == "native":
        return _render_native(tokenizer, messages, tools, trained)
    return _render_fallback(name, tokenizer, messages, tools, trained, generation_prompt=False)


def encode_chat(
    tokenizer: Any,
    messages: Sequence[Message],
    *,
    template: str = "auto",
    fallback: str = "alpaca",
    cutoff_len: int = 2048,
    train_on: str = "assistant",
    tools: list[dict[str, Any]] | None = None,
) -> EncodedChat:
    """Token ids and the per-token training mask of one chat, cut to ``cutoff_len``."""
    text, spans = render_chat(
        tokenizer, messages, template=template, fallback=fallback, train_on=train_on, tools=tools
    )
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoding["input_ids"])
    mask = [_in_spans(start, end, spans) for start, end in encoding["offset_mapping"]]
    truncated = len(ids) > cutoff_len
    return EncodedChat(ids=ids[:cutoff_len], mask=mask[:cutoff_len], truncated=truncated)


def encode_dataset(
    tokenizer: Any,
    rows: Iterable[dict[str, Any]],
    *,
    template: str = "auto",
    fallback: str = "alpaca",
    cutoff_len: int = 2048,
    train_on: str = "assistant",
) -> EncodedDataset:
    """Encode JSONL rows (``{"messages": [...], "tools"?: [...]}``); drop untrainable ones."""
    examples: list[EncodedChat] = []
    skipped = truncated = 0
    for row in rows:
        encoded = encode_chat(
            tokenizer,
            row["messages"],
            template=template,
            fallback=fallback,
            cutoff_len=cutoff_len,
            train_on=train_on,
            tools=row.get("tools"),
        )
        truncated += encoded.truncated
        if encoded.num_trained == 0:
            skipped += 1
            continue
        examples.append(encoded)
    if skipped or truncated:
        log.warning(
            "%d examples cut at cutoff_len=%d; %d skipped with no trained token left",
            truncated,
            cutoff_len,
            skipped,
        )
    return EncodedDataset(examples=examples, skipped=skipped, truncated=truncated)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a chat JSONL split, each checked to hold a ``messages`` list."""
    import orjson

    rows: list[dict[str, Any]] = []
    try:
        lines = Path(path).read_bytes().splitlines()
    except OSError as e:
        raise DatasetError(
            f"cannot read {path}: {e.strerror}", hint="build the dataset first"
        ) from e
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise DatasetError(f"{path}:{number}: not valid JSON ({e})") from e
        if not isinstance(row, dict) or not isinstance(row.get("messages"), list):
            raise DatasetError(f"{path}:{number}: expected an object with a 'messages' list")
        rows.append(row)
    return rows


# --- internals -------------------------------------------------------------------------------


def _normalize(messages: Sequence[Message]) -> list[Message]:
    out: list[Message] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if role not in ROLES:
            raise DatasetError(
                f"message {index} has role {role!r}", hint=f"roles are {', '.join(ROLES)}"
            )
        out.append({**message, "content": _text(message.get("content"))})
    return out


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI-style parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


def _trained_indices(messages: list[Message], train_on: str) -> set[int]:
    if train_on not in ("assistant", "last_assistant"):
        raise UsageError(
            f"unknown train_on '{train_on}'", hint="use 'assistant' or 'last_assistant'"
        )
    indices = [
        i for i, m in enumerate(messages) if m["role"] == "assistant" and m.get("weight", 1) != 0
    ]
    if train_on == "last_assistant":
        indices = indices[-1:]
    return set(indices)


def _in_spans(start: int, end: int, spans: list[Span]) -> bool:
    if start == end:
        return any(a <= start < b for a, b in spans)
    return any(start < b and end > a for a, b in spans)


def _native(
    tokenizer: Any,
    messages: list[Message],
    tools: list[dict[str, Any]] | None,
    *,
    generation_prompt: bool,
) -> str:
    try:
        text = tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=generation_prompt
        )
    except Exception as e:  # jinja raises many types (TemplateError, TypeError, ...)
        raise DatasetError(
            f"the tokenizer's chat template cannot render this chat: {e}",
            hint="fix the example, or pick a fallback template (alpaca, chatml)",
        ) from e
    return str(text)


def _render_native(
    tokenizer: Any,
    messages: list[Message],
    tools: list[dict[str, Any]] | None,
    trained: set[int],
) -> tuple[str, list[Span]]:
    full = _native(tokenizer, messages, tools, generation_prompt=False)
    spans: list[Span] = []
    for i in sorted(trained):
        before = _native(tokenizer, messages[:i], tools, generation_prompt=True) if i else ""
        upto = _native(tokenizer, messages[: i + 1], tools, generation_prompt=False)
        start = _common_prefix(before, upto)
        end = _common_prefix(upto, full)
        end = start + len(full[start:end].rstrip())
        if end > start:
            spans.append((start, end))
    return full, spans


def _common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix of two strings."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    return next(i for i in range(n) if a[i] != b[i])


def _tool_calls_text(message: Message) -> str:
    parts = []
    for call in message.get("tool_calls") or []:
        fn = call.get("function", call)
        arguments = fn.get("arguments", {})
        if isinstance(arguments, str):
            with contextlib.suppress(ValueError):
                arguments = json.loads(arguments)
        body = json.dumps({"name": fn.get("name"), "arguments": arguments}, ensure_ascii=False)
        parts.append(f"<tool_call>\n{body}\n</tool_call>")
    return "\n".join(parts)


def _assistant_body(message: Message, end_of_turn: str) -> str:
    pieces = [p for p in (message["content"], _tool_calls_text(message)) if p]
    return "\n".join(pieces) + end_of_turn


def _tools_text(tools: list[dict[str, Any]] | None) -> str:
    if not tools:
        return ""
    listed = "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in tools)
    return f"You can call these tools:\n<tools>\n{listed}</tools>"


def _bos_text(tokenizer: Any) -> str:
    """The BOS text when the tokenizer adds BOS to plain text (templates are tokenized raw)."""
    bos = getattr(tokenizer, "bos_token", None)
    if not bos:
        return ""
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    return str(bos) if probe[:1] == [tokenizer.bos_token_id] else ""


class _Builder:
    """Text assembled piece by piece, remembering which pieces are trained."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.spans: list[Span] = []
        self.length = 0

    def add(self, text: str, *, trained: bool = False) -> None:
        if trained and text:
            self.spans.append((self.length, self.length + len(text)))
        self.parts.append(text)
        self.length += len(text)

    def result(self) -> tuple[str, list[Span]]:
        return "".join(self.parts), self.spans


def _render_fallback(
    name: str,
    tokenizer: Any,
    messages: list[Message],
    tools: list[dict[str, Any]] | None,
    trained: set[int],
    *,
    generation_prompt: bool,
) -> tuple[str, list[Span]]:
    out = _Builder()
    out.add(_bos_text(tokenizer))
    if name == "alpaca":
        _alpaca(out, tokenizer, messages, tools, trained)
        if generation_prompt:
            out.add("### Response:\n")
    else:
        _chatml(out, messages, tools, trained)
        if generation_prompt:
            out.add("<|im_start|>assistant\n")
    return out.result()


def _alpaca(
    out: _Builder,
    tokenizer: Any,
    messages: list[Message],
    tools: list[dict[str, Any]] | None,
    trained: set[int],
) -> None:
    systems = [m["content"] for m in messages if m["role"] == "system" and m["content"]]
    preamble = "\n\n".join(p for p in (*(systems or [ALPACA_PREAMBLE]), _tools_text(tools)) if p)
    out.add(preamble + "\n\n")
    eos = tokenizer.eos_token or ""
    for i, message in enumerate(messages):
        role = message["role"]
        if role == "user":
            out.add(f"### Instruction:\n{message['content']}\n\n")
        elif role == "tool":
            out.add(f"### Input:\n{message['content']}\n\n")
        elif role == "assistant":
            out.add("### Response:\n")
            out.add(_assistant_body(message, eos), trained=i in trained)
            out.add("\n\n")


def _chatml(
    out: _Builder,
    messages: list[Message],
    tools: list[dict[str, Any]] | None,
    trained: set[int],
) -> None:
    tools_text = _tools_text(tools)
    if tools_text and messages[0]["role"] != "system":
        out.add(f"<|im_start|>system\n{tools_text}{CHATML_END}\n")
    for i, message in enumerate(messages):
        role, content = message["role"], message["content"]
        if role == "assistant":
            out.add("<|im_start|>assistant\n")
            out.add(_assistant_body(message, CHATML_END), trained=i in trained)
            out.add("\n")
        elif role == "tool":
            out.add(f"<|im_start|>tool\n<tool_response>\n{content}\n</tool_response>{CHATML_END}\n")
        elif role == "system" and i == 0 and tools_text:
            out.add(f"<|im_start|>system\n{content}\n\n{tools_text}{CHATML_END}\n")
        else:
            out.add(f"<|im_start|>{role}\n{content}{CHATML_END}\n")
