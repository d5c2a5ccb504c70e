"""The tokenizer part of a GGUF file, derived from an HF ``tokenizer.json``.

llama.cpp re-implements tokenization itself, so the GGUF must name the algorithm
(``gpt2`` = byte-level BPE with merges, ``llama`` = SentencePiece-style with scores)
and, for byte-level BPE, the pre-tokenizer regex (``tokenizer.ggml.pre``). A wrong
pre-tokenizer loads but splits text differently, and outputs diverge (FACTS.md), so
the name is *derived*: the tokenizer's own pre-tokenizer splits a fixed test string
and the pieces are compared with those of each regex llama.cpp knows. Nothing
matches → a clear refusal, never a silently wrong file. The comparison needs no
vocabulary, so tokenizers trained yesterday (or in a test) are handled too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from mlx_rsi.errors import MlxRsiError

# The regexes behind llama.cpp's pre-tokenizer names (as the original tokenizers define them).
_GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_LLAMA3 = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"""
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
_QWEN2 = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
PRE_TOKENIZERS: dict[str, str] = {"gpt-2": _GPT2, "llama-bpe": _LLAMA3, "qwen2": _QWEN2}

# Digits, contractions, whitespace runs, newlines, emoji, CJK, Cyrillic, punctuation runs.
CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ ✅ 🦙🦙 3 33 333 "
    "3333 33333 333333 3.3 3..3 3...3 ?我想在apple工作1314151天～ ------======= нещо на "
    "Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you "
    "sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL HELLO World123 x_y"
)

TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = (
    1,
    2,
    3,
    4,
    5,
    6,
)


class VocabError(MlxRsiError):
    """A tokenizer cannot be written to GGUF faithfully."""


@dataclass
class GgufVocab:
    model: str  # "gpt2" | "llama"
    pre: str
    tokens: list[str]
    types: list[int]
    scores: list[float] | None
    merges: list[str]
    special_ids: dict[str, int]
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool | None
    chat_template: str | None


def build_vocab(model_dir: Path, n_rows: int) -> GgufVocab:
    """The GGUF vocab of the tokenizer in ``model_dir``, padded to ``n_rows`` tokens."""
    text = _tokenizer_json(model_dir)
    raw: dict[str, Any] = orjson.loads(text)
    model = raw.get("model", {})
    if model.get("type") != "BPE":
        raise VocabError(
            f"{model_dir}/tokenizer.json: tokenizer model '{model.get('type')}' is not supported",
            hint="GGUF export handles byte-level BPE and SentencePiece-style BPE tokenizers",
        )
    settings = _tokenizer_config(model_dir)
    if model.get("byte_fallback"):
        vocab = _sentencepiece_style(raw, n_rows)
        vocab.special_ids = _special_ids(settings, vocab.tokens)
        vocab.add_bos, vocab.add_eos = _added_specials(raw.get("post_processor"), settings)
    else:
        vocab = _byte_level(raw, model_dir, n_rows)
    vocab.chat_template = chat_template(model_dir, settings)
    return vocab


def _tokenizer_json(model_dir: Path) -> str:
    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        raise VocabError(
            f"{model_dir} has no tokenizer.json",
            hint="GGUF export needs the fast tokenizer file; save the tokenizer with "
            "transformers (tokenizer.save_pretrained) into the model folder",
        )
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, ValueError) as e:
        raise VocabError(f"cannot read {path}: {e}") from e


def _tokenizer_config(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / "tokenizer_config.json"
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def chat_template(model_dir: Path, settings: dict[str, Any] | None = None) -> str | None:
    """The chat template saved with the tokenizer (``chat_template.jinja`` or the config)."""
    jinja = Path(model_dir) / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    value = (settings if settings is not None else _tokenizer_config(model_dir)).get(
        "chat_template"
    )
    if isinstance(value, list):  # named templates: the default one
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default")
    return value if isinstance(value, str) else None


def _ordered_tokens(raw: dict[str, Any], n_rows: int) -> tuple[list[str | None], dict[int, Any]]:
    """Token texts by id (None for holes) and the added tokens by id."""
    by_id: list[str | None] = [None] * n_rows
    for text, token_id in raw["model"]["vocab"].items():
        if token_id < n_rows:
            by_id[token_id] = text
    added = {int(a["id"]): a for a in raw.get("added_tokens", []) if int(a["id"]) < n_rows}
    for token_id, entry in added.items():
        by_id[token_id] = entry["content"]
    return by_id, added


def _byte_level(raw: dict[str, Any], model_dir: Path, n_rows: int) -> GgufVocab:
    """Byte-level BPE as transformers loads it: its tokenizer class may replace the
    file's pre-tokenizer (Qwen2's splits digits one by one), and that is what counts."""
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(model_dir))
    pre = pre_tokenizer_name(hf.backend_tokenizer, model_dir)
    by_id, added = _ordered_tokens(raw, n_rows)
    tokens: list[str] = []
    types: list[int] = []
    for token_id, piece in enumerate(by_id):
        if piece is None:
            tokens.append(f"[PAD{token_id}]")
            types.append(TOKEN_UNUSED)
        elif token_id in added:
            tokens.append(piece)
            types.append(TOKEN_CONTROL if added[token_id].get("special") else TOKEN_USER_DEFINED)
        else:
            tokens.append(piece)
            types.append(TOKEN_NORMAL)
    vocab = GgufVocab("gpt2", pre, tokens, types, None, _merges(raw), {}, False, False, None, None)
    vocab.special_ids = _observed_special_ids(hf, len(tokens))
    vocab.add_bos, vocab.add_eos = _observed_added_specials(hf)
    return vocab


def _observed_special_ids(hf: Any, n_tokens: int) -> dict[str, int]:
    ids: dict[str, int] = {}
    for kind in ("bos", "eos", "unk", "pad"):
        value = getattr(hf, f"{kind}_token_id", None)
        if isinstance(value, int) and 0 <= value < n_tokens:
            ids[kind] = value
    return ids


def _observed_added_specials(hf: Any) -> tuple[bool, bool]:
    """Whether transformers' encoding adds BOS / EOS around text."""
    ids = hf("a")["input_ids"]
    plain = hf("a", add_special_tokens=False)["input_ids"]
    added = len(ids) > len(plain)
    add_bos = added and hf.bos_token_id is not None and ids[0] == hf.bos_token_id
    add_eos = added and hf.eos_token_id is not None and ids[-1] == hf.eos_token_id
    return add_bos, add_eos


def _merges(raw: dict[str, Any]) -> list[str]:
    merges = raw["model"].get("merges") or []
    if merges and isinstance(merges[0], list):  # transformers >= 4.45: pairs
        return [" ".join(_space_safe(part) for part in pair) for pair in merges]
    return [str(m) for m in merges]


def _space_safe(part: str) -> str:
    return "".join(chr(ord(c) + 256) if c == " " else c for c in part)


def _sentencepiece_style(raw: dict[str, Any], n_rows: int) -> GgufVocab:
    """A BPE with byte fallback converted from SentencePiece (Gemma, Llama 2, Mistral)."""
    by_id, added = _ordered_tokens(raw, n_rows)
    merges = raw["model"].get("merges") or []
    pairs = (
        merges if not merges or isinstance(merges[0], list) else [m.split(" ", 1) for m in merges]
    )
    rank = {a + b: i for i, (a, b) in reversed(list(enumerate(pairs)))}  # first merge wins
    tokens: list[str] = []
    types: list[int] = []
    scores: list[float] = []
    for token_id, text in enumerate(by_id):
        kind, score = _piece_kind(token_id, text, added, rank)
        tokens.append(text if text is not None else f"<unused-row{token_id}>")
        types.append(kind)
        scores.append(score)
    prefix = _prepends_space(raw.get("normalizer"))
    return GgufVocab("llama", "default", tokens, types, scores, [], {}, False, False, prefix, None)


def _piece_kind(
    token_id: int, text: str | None, added: dict[int, Any], rank: dict[str, int]
) -> tuple[int, float]:
    """Token type and score; a merged piece scores by merge rank (earlier merges win)."""
    if text is None:
        return TOKEN_UNUSED, -1e9
    if token_id in added:
        return (TOKEN_CONTROL if added[token_id].get("special") else TOKEN_USER_DEFINED), -1000.0
    if len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
        return TOKEN_BYTE, 0.0
    if text in rank:
        return TOKEN_NORMAL, -float(rank[text])
    return TOKEN_NORMAL, 0.0 if len(text) == 1 else -1e6


def _prepends_space(normalizer: Any) -> bool:
    """Whether the normalizer puts '▁' before the text (Llama 2 style) or not (Gemma)."""
    if not isinstance(normalizer, dict):
        return False
    if normalizer.get("type") == "Prepend":
        return True
    return any(_prepends_space(n) for n in normalizer.get("normalizers") or [])


def pre_tokenizer_name(backend: Any, where: Path) -> str:
    """The llama.cpp pre-tokenizer whose regex splits text exactly like ``backend``
    (a ``tokenizers.Tokenizer``; NFC normalization, a no-op on NFC text, is allowed)."""
    import regex

    normalizer = backend.normalizer
    if normalizer is not None and type(normalizer).__name__ != "NFC":
        raise VocabError(
            f"{where}: a byte-level BPE with a {type(normalizer).__name__} normalizer "
            "has no llama.cpp equivalent"
        )
    if backend.pre_tokenizer is None:
        raise VocabError(f"{where}/tokenizer.json: byte-level BPE without a pre-tokenizer")
    pieces = [piece for piece, _ in backend.pre_tokenizer.pre_tokenize_str(CHECK_TEXT)]
    table = _byte_table()
    for name, pattern in PRE_TOKENIZERS.items():
        expected = [
            "".join(table[b] for b in part.encode("utf-8"))
            for part in regex.findall(pattern, CHECK_TEXT)
        ]
        if expected == pieces:
            return name
    raise VocabError(
        f"{where}/tokenizer.json: its pre-tokenizer splits text like none llama.cpp knows "
        f"({', '.join(PRE_TOKENIZERS)})",
        hint="export formats other than GGUF still work (mlx, hf)",
    )


def _byte_table() -> dict[int, str]:
    """GPT-2's byte → printable character map (the byte-level alphabet)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _special_ids(settings: dict[str, Any], tokens: list[str]) -> dict[str, int]:
    index = {text: token_id for token_id, text in enumerate(tokens)}
    ids: dict[str, int] = {}
    for kind in ("bos", "eos", "unk", "pad"):
        value = settings.get(f"{kind}_token")
        text = value.get("content") if isinstance(value, dict) else value
        if isinstance(text, str) and text in index:
            ids[kind] = index[text]
    return ids


def _added_specials(processor: Any, settings: dict[str, Any]) -> tuple[bool, bool]:
    """Whether encoding adds BOS / EOS: what the post-processor's template puts around text."""
    names = {}
    for kind in ("bos", "eos"):
        value = settings.get(f"{kind}_token")
        names[kind] = value.get("content") if isinstance(value, dict) else value
    single = _single_template(processor)
    specials = [p["SpecialToken"]["id"] for p in single if "SpecialToken" in p]
    first = bool(single) and "SpecialToken" in single[0]
    last = bool(single) and "SpecialToken" in single[-1]
    add_bos = first and specials[0] == names["bos"]
    add_eos = last and specials[-1] == names["eos"]
    return add_bos, add_eos


def _single_template(processor: Any) -> list[dict[str, Any]]:
    if not isinstance(processor, dict):
        return []
    if processor.get("type") == "TemplateProcessing":
        return list(processor.get("single") or [])
    for inner in processor.get("processors") or []:
        found = _single_template(inner)
        if found:
            return found
    return []
