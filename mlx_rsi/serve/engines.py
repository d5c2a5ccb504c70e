"""Generation engines: one loaded model each, streaming text deltas.

Three engines behind one small protocol: transformers (CPU/CUDA, the fused HF
export), MLX (Apple silicon, the fused MLX export) and llama.cpp through
llama-cpp-python (the GGUF export). Each renders chats with the template the
model was trained with (fused models carry it; the base model gets the
configured fallback) and cuts answers at the template's stop strings. One
generation runs at a time per engine (a lock): on a laptop, parallel requests
would only fight for the same cores.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mlx_rsi.errors import ModelError
from mlx_rsi.serve.stops import StopCutter

Messages = list[dict[str, Any]]


@dataclass
class Generation:
    """What a finished (or cancelled) stream produced, filled in as it runs."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # "stop" | "length" | "cancelled"


class Engine(Protocol):
    name: str

    def count_prompt_tokens(self, messages: Messages) -> int: ...

    def stream(
        self,
        messages: Messages,
        *,
        max_tokens: int,
        temperature: float,
        cancel: threading.Event,
        result: Generation,
    ) -> Iterator[str]: ...


def load_engine(engine: str, path: Path, *, fallback_template: str = "alpaca") -> Engine:
    """Load ``path`` with the named engine (the framework is imported here)."""
    if engine == "transformers":
        return TransformersEngine(path, fallback_template)
    if engine == "mlx":
        return MlxEngine(path, fallback_template)
    if engine == "gguf":
        return GgufEngine(path)
    raise ModelError(f"unknown serve engine '{engine}'", hint="use transformers, mlx or gguf")


def complete(engine: Engine, messages: Messages, *, max_tokens: int, temperature: float) -> str:
    """The whole answer at once (chat, run-tasks)."""
    result = Generation()
    return "".join(
        engine.stream(
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            cancel=threading.Event(),
            result=result,
        )
    )


class TransformersEngine:
    name = "transformers"

    def __init__(self, model_dir: Path, fallback_template: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        from backends.chat import load_tokenizer, stop_strings

        self.tokenizer = load_tokenizer(model_dir)
        self.fallback = fallback_template
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = "auto" if self.device == "cuda" else torch.float32
        try:
            model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype)
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot load the model at {model_dir}: {e}") from e
        self.model = model.to(self.device).eval()
        self.stops = stop_strings(self.tokenizer, template="auto", fallback=self.fallback)
        self._lock = threading.Lock()

    def _prompt(self, messages: Messages) -> str:
        from backends.chat import render_prompt

        return render_prompt(self.tokenizer, messages, template="auto", fallback=self.fallback)

    def count_prompt_tokens(self, messages: Messages) -> int:
        return len(self.tokenizer(self._prompt(messages), add_special_tokens=False)["input_ids"])

    def stream(
        self,
        messages: Messages,
        *,
        max_tokens: int,
        temperature: float,
        cancel: threading.Event,
        result: Generation,
    ) -> Iterator[str]:
        enc = self.tokenizer(self._prompt(messages), add_special_tokens=False, return_tensors="pt")
        result.prompt_tokens = int(enc["input_ids"].shape[1])
        kwargs = self._generate_kwargs(enc, max_tokens, temperature, cancel)

        def produce(emit: Emit) -> None:
            import torch

            with torch.no_grad():
                self.model.generate(**kwargs, streamer=_emitting_streamer(self.tokenizer, emit))

        deltas = _produced(self._lock, produce)
        yield from _cut(deltas, self.stops, cancel, result, self._count)
        _set_length_reason(result, max_tokens)

    def _generate_kwargs(
        self, enc: Any, max_tokens: int, temperature: float, cancel: threading.Event
    ) -> dict[str, Any]:
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return cancel.is_set()

        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": temperature}
            if temperature > 0
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        )
        pad = self.tokenizer.pad_token_id
        return {
            **{k: v.to(self.device) for k, v in enc.items()},
            "max_new_tokens": max_tokens,
            "stopping_criteria": StoppingCriteriaList([_Cancelled()]),
            "pad_token_id": pad if pad is not None else self.tokenizer.eos_token_id,
            **sampling,
        }

    def _count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def _emitting_streamer(tokenizer: Any, emit: Emit) -> Any:
    """transformers' TextStreamer, handing each decoded piece to ``emit``."""
    from transformers import TextStreamer

    class _Emitting(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                emit(text)

    return _Emitting(tokenizer, skip_prompt=True, skip_special_tokens=True)


class MlxEngine:
    name = "mlx"

    def __init__(self, model_dir: Path, fallback_template: str) -> None:
        from mlx_lm import load

        from backends.chat import stop_strings

        try:
            loaded: Any = load(str(model_dir))
            self.model, self.tokenizer = loaded[0], loaded[1]
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot load the MLX model at {model_dir}: {e}") from e
        self.fallback = fallback_template
        self.stops = stop_strings(self.tokenizer, template="auto", fallback=self.fallback)
        self._lock = threading.Lock()

    def _prompt(self, messages: Messages) -> str:
        from backends.chat import render_prompt

        return render_prompt(self.tokenizer, messages, template="auto", fallback=self.fallback)

    def count_prompt_tokens(self, messages: Messages) -> int:
        return len(self.tokenizer.encode(self._prompt(messages), add_special_tokens=False))

    def stream(
        self,
        messages: Messages,
        *,
        max_tokens: int,
        temperature: float,
        cancel: threading.Event,
        result: Generation,
    ) -> Iterator[str]:
        from mlx_lm import stream_generate
        from mlx_lm.sample_utils import make_sampler

        prompt = self.tokenizer.encode(self._prompt(messages), add_special_tokens=False)
        result.prompt_tokens = len(prompt)

        def produce(emit: Emit) -> None:
            sampler = make_sampler(temp=temperature)
            for response in stream_generate(
                self.model, self.tokenizer, prompt, max_tokens=max_tokens, sampler=sampler
            ):
                if cancel.is_set():
                    return
                emit(response.text)

        yield from _cut(_produced(self._lock, produce), self.stops, cancel, result, self._count)
        _set_length_reason(result, max_tokens)

    def _count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))


class GgufEngine:
    name = "gguf"

    def __init__(self, gguf_path: Path, n_ctx: int = 4096) -> None:
        from llama_cpp import Llama

        try:
            self.llm = Llama(model_path=str(gguf_path), n_ctx=n_ctx, seed=0, verbose=False)
        except (OSError, ValueError) as e:
            raise ModelError(f"llama.cpp cannot load {gguf_path}: {e}") from e
        self._lock = threading.Lock()

    def count_prompt_tokens(self, messages: Messages) -> int:
        text = "\n".join(str(m.get("content") or "") for m in messages)
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=True))

    def stream(
        self,
        messages: Messages,
        *,
        max_tokens: int,
        temperature: float,
        cancel: threading.Event,
        result: Generation,
    ) -> Iterator[str]:
        result.prompt_tokens = self.count_prompt_tokens(messages)

        chat: Any = messages  # llama_cpp types each role's message dict separately

        def produce(emit: Emit) -> None:
            chunks: Any = self.llm.create_chat_completion(
                messages=chat, max_tokens=max_tokens, temperature=temperature, stream=True
            )
            for chunk in chunks:
                if cancel.is_set():
                    return
                choice = chunk["choices"][0]
                delta = choice.get("delta", {}).get("content")
                if delta:
                    result.completion_tokens += 1
                    emit(delta)
                if choice.get("finish_reason") == "length":
                    result.finish_reason = "length"

        yield from _produced(self._lock, produce)
        if cancel.is_set() and result.finish_reason == "stop":
            result.finish_reason = "cancelled"


Emit = Callable[[str], None]
_END = object()


def _produced(lock: threading.Lock, produce: Callable[[Emit], None]) -> Iterator[str]:
    """Run ``produce`` on a worker thread holding ``lock``; yield what it emits.

    The model runs on its own thread so that a consumer that stops reading (a client
    that hung up) never keeps the lock: the worker ends at the next token once the
    caller's cancel event is set, or at max_tokens, and releases the lock itself.
    """
    items: queue.Queue[Any] = queue.Queue()

    def work() -> None:
        try:
            with lock:
                produce(items.put)
        except BaseException as e:  # handed to the consumer, raised there
            items.put(e)
        finally:
            items.put(_END)

    threading.Thread(target=work, daemon=True, name="mlx-rsi-generate").start()
    while True:
        item = items.get()
        if item is _END:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def _cut(
    deltas: Any,
    stops: list[str],
    cancel: threading.Event,
    result: Generation,
    count: Any,
) -> Iterator[str]:
    """Yield deltas up to the first stop string; count the answer's tokens at the end."""
    cutter = StopCutter(stops)
    answer: list[str] = []
    for delta in deltas:
        if cancel.is_set():
            result.finish_reason = "cancelled"
            break
        out = cutter.feed(delta)
        if out:
            answer.append(out)
            yield out
        if cutter.stopped:
            break
    cancel.set()  # stop the model: a stop string ended the answer, or the reader left
    tail = cutter.flush()
    if tail:
        answer.append(tail)
        yield tail
    result.completion_tokens = count("".join(answer))


def _set_length_reason(result: Generation, max_tokens: int) -> None:
    if result.finish_reason == "stop" and result.completion_tokens >= max_tokens:
        result.finish_reason = "length"
