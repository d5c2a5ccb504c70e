"""Parity before anything is called exported: the GGUF against transformers.

Each GGUF is loaded by llama.cpp (llama-cpp-python), the same prompts are tokenized
by both sides (ids must be equal: this catches a wrong pre-tokenizer or vocab), and
each side continues greedily for a fixed number of tokens. F16/BF16/Q8_0 must give
exactly transformers' tokens; K-quants report how far they agree. The first step's
top-1 logit difference is reported too. The result is stored in the version record.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlx_rsi.artifact_formats import FLOAT_GGUF_TYPES
from mlx_rsi.errors import MlxRsiError

log = logging.getLogger(__name__)

PLAIN_PROMPTS = ("The capital of France is", "def add(a, b):\n    return", "I fixed the bug in")
CHAT_QUESTION = "How do I read a file in Python?"
EXACT_TYPES = FLOAT_GGUF_TYPES  # exact greedy equality required
NEW_TOKENS = 12


class ParityError(MlxRsiError):
    """An exported file does not behave like the model it was exported from."""


@dataclass
class PromptParity:
    prompt: str
    tokens_equal: bool  # tokenization of the prompt
    reference: list[int]
    gguf: list[int]
    agreement: float  # share of generated tokens before the first divergence
    top1_logit_diff: float
    noise: float = 0.0  # largest |logit difference| over the vocabulary at the first step
    tie_margin: float | None = None  # reference's top-2 gap where the tokens diverged

    @property
    def within_noise(self) -> bool:
        """Diverged only where transformers' top two were closer than the measured noise."""
        return self.tie_margin is not None and self.tie_margin <= 2 * self.noise


@dataclass
class ParityResult:
    file: str
    qtype: str
    exact_required: bool
    prompts: list[PromptParity] = field(default_factory=list)

    @property
    def tokenizer_ok(self) -> bool:
        return all(p.tokens_equal for p in self.prompts)

    @property
    def agreement(self) -> float:
        return sum(p.agreement for p in self.prompts) / max(1, len(self.prompts))

    @property
    def ok(self) -> bool:
        """Tokenizer equal; for exact types every continuation equal, unless it split off
        at a near-tie (two tokens within the numerical noise measured on this file)."""
        if not self.tokenizer_ok:
            return False
        if not self.exact_required:
            return True
        return all(p.agreement == 1.0 or p.within_noise for p in self.prompts)

    @property
    def ties(self) -> int:
        return sum(1 for p in self.prompts if p.agreement < 1.0 and p.within_noise)

    def summary(self) -> str:
        state = "ok" if self.ok else "MISMATCH"
        worst = max((p.top1_logit_diff for p in self.prompts), default=0.0)
        ties = f", {self.ties} split at a near-tie" if self.ties else ""
        return (
            f"{self.file}: {state} (tokenizer {'equal' if self.tokenizer_ok else 'differs'}, "
            f"greedy agreement {self.agreement:.0%}{ties}, top-1 logit diff {worst:.3g})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "qtype": self.qtype,
            "ok": self.ok,
            "exact_required": self.exact_required,
            "tokenizer_equal": self.tokenizer_ok,
            "agreement": round(self.agreement, 4),
            "near_ties": self.ties,
            "prompts": [asdict(p) for p in self.prompts],
        }


@dataclass
class Reference:
    """Transformers' prompt ids, greedy continuations and first-step logits."""

    prompts: list[str]
    ids: list[list[int]]
    greedy: list[list[int]]
    first_logits: list[Any]
    add_bos: bool
    margins: list[list[float]] = field(default_factory=list)  # top-2 gap at each step


def default_prompts(tokenizer: Any) -> list[str]:
    """Plain prompts, plus one chat turn rendered with the model's own template."""
    prompts = list(PLAIN_PROMPTS)
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": CHAT_QUESTION}]
        prompts.append(
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )
    return prompts


def quiet_transformers() -> contextlib.AbstractContextManager[None]:
    """No weight-loading bars from transformers while a check loads a model (restored)."""
    from mlx_rsi.basemodel import _no_progress_bars

    return _no_progress_bars()


def reference(hf_dir: Path, prompts: Sequence[str] | None = None) -> Reference:
    """Greedy continuations of the HF model (float32) that every GGUF is compared with."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(str(hf_dir))
        model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    chosen = list(prompts) if prompts else default_prompts(tokenizer)
    ref = Reference(chosen, [], [], [], False)
    for prompt in chosen:
        prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        if _starts_twice(prompt_ids, tokenizer.bos_token_id):
            prompt_ids = prompt_ids[1:]  # the rendered template already holds BOS
        tokens, logits, margins = _hf_greedy(model, prompt_ids)
        ref.ids.append(prompt_ids)
        ref.greedy.append(tokens)
        ref.first_logits.append(logits)
        ref.margins.append(margins)
    plain = tokenizer("a")["input_ids"]
    ref.add_bos = bool(plain) and plain[0] == tokenizer.bos_token_id
    return ref


def _starts_twice(ids: list[int], bos: int | None) -> bool:
    return bos is not None and len(ids) > 1 and ids[0] == bos and ids[1] == bos


def _hf_greedy(model: Any, prompt_ids: list[int]) -> tuple[list[int], Any, list[float]]:
    import torch

    cache_arg = _cache_arg(model)
    tokens: list[int] = []
    first = None
    margins = []
    with torch.no_grad():
        # Decoded with the KV cache, as llama.cpp does (recomputing the whole sequence at
        # every token took 15 of the 35 s of a q8_0 export of the 270M model).
        out = model(torch.tensor([list(prompt_ids)]), use_cache=True, logits_to_keep=1)
        for step in range(NEW_TOKENS):
            logits = out.logits[0, -1].float()
            if first is None:
                first = logits.numpy().copy()
            top = torch.topk(logits, 2).values
            margins.append(float(top[0] - top[1]))
            tokens.append(int(torch.argmax(logits)))
            if step + 1 < NEW_TOKENS:
                cache = {cache_arg: getattr(out, cache_arg)}
                out = model(torch.tensor([tokens[-1:]]), use_cache=True, **cache)
    return tokens, first, margins


def _cache_arg(model: Any) -> str:
    """The forward argument that takes the KV cache (transformers 5 renamed it ``cache``)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def check_gguf(path: Path, qtype: str, ref: Reference) -> ParityResult:
    """Load ``path`` in llama.cpp and compare it with ``ref`` prompt by prompt."""
    import numpy as np

    result = ParityResult(Path(path).name, qtype, qtype in EXACT_TYPES)
    with _llama(path, ref) as llm:
        for index, prompt in enumerate(ref.prompts):
            ids, expected, first = ref.ids[index], ref.greedy[index], ref.first_logits[index]
            own_ids = llm.tokenize(prompt.encode("utf-8"), add_bos=ref.add_bos, special=True)
            if _starts_twice(own_ids, llm.token_bos()):
                own_ids = own_ids[1:]
            tokens, logits = _llama_greedy(llm, ids)
            top = int(np.argmax(first))
            same = _prefix_agreement(expected, tokens)
            split = round(same * len(expected))
            result.prompts.append(
                PromptParity(
                    prompt=prompt,
                    tokens_equal=list(own_ids) == list(ids),
                    reference=list(expected),
                    gguf=tokens,
                    agreement=same,
                    top1_logit_diff=float(abs(float(first[top]) - float(logits[top]))),
                    noise=float(np.max(np.abs(first - logits))),
                    tie_margin=ref.margins[index][split] if split < len(expected) else None,
                )
            )
    return result


@contextlib.contextmanager
def _llama(path: Path, ref: Reference) -> Iterator[Any]:
    try:
        from llama_cpp import Llama
    except ImportError as e:
        raise ParityError(
            "GGUF parity check needs llama-cpp-python", hint="pip install 'mlx-rsi[gguf]'"
        ) from e
    longest = max(len(i) for i in ref.ids) + NEW_TOKENS + 8
    n_ctx = max(64, -(-longest // 32) * 32)
    try:
        llm = Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=n_ctx,
            logits_all=True,
            verbose=False,
            n_threads=max(1, os.cpu_count() or 1),
            seed=0,
        )
    except (ValueError, RuntimeError) as e:
        raise ParityError(f"llama.cpp cannot load {Path(path).name}: {e}") from e
    try:
        yield llm
    finally:
        llm.close()


def _llama_greedy(llm: Any, prompt_ids: list[int]) -> tuple[list[int], Any]:
    import numpy as np

    llm.reset()
    llm.eval(prompt_ids)
    first = np.array(llm.scores[llm.n_tokens - 1], copy=True)
    tokens: list[int] = []
    for _ in range(NEW_TOKENS):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        tokens.append(token)
        llm.eval([token])
    return tokens, first


def _prefix_agreement(expected: Sequence[int], got: Sequence[int]) -> float:
    same = 0
    for a, b in zip(expected, got, strict=False):
        if a != b:
            break
        same += 1
    return same / max(1, len(expected))
