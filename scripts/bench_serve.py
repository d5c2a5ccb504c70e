"""Serving speed: tokens/s and latency percentiles at concurrency 1, 4 and 16.

Both servers answer the same OpenAI chat requests on the same GGUF file: mlx-rsi's
(`serve.engine: gguf`, in-process uvicorn) and, as the anchor, llama.cpp's own
server from llama-cpp-python (`python -m llama_cpp.server`, when its extra
dependencies are installed). Without the anchor server, the anchor is
llama-cpp-python called directly in-process (no HTTP at all: the ceiling).

    python scripts/bench_serve.py                      # a tiny llama built on the spot
    python scripts/bench_serve.py --gguf model.gguf    # e.g. an export of the 270M model
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PROMPT = [{"role": "user", "content": "Write a short note about keeping API tokens safe."}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tiny_gguf(folder: Path) -> Path:
    from mlx_rsi.export.gguf import write_gguf
    from mlx_rsi.tinymodel import build_tiny_model

    model = build_tiny_model(folder / "model", arch="llama")
    return write_gguf(model, folder / "tiny-q8_0.gguf", "q8_0")


def start_ours(gguf: Path, port: int) -> Callable[[], None]:
    import uvicorn

    from mlx_rsi.serve.app import ServeState, create_app
    from mlx_rsi.serve.engines import load_engine
    from mlx_rsi.serve.recorder import Recorder

    state = ServeState(
        engines={"bench": load_engine("gguf", gguf)},
        default_version="bench",
        recorder=Recorder(Path(tempfile.mkdtemp()), enabled=False),
        model_name="bench",
        max_tokens=32,
        max_prompt_tokens=4096,
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(state), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join()

    return stop


def start_llama_server(gguf: Path, port: int) -> Callable[[], None] | None:
    needed = ("llama_cpp.server", "sse_starlette", "starlette_context", "pydantic_settings")
    if any(importlib.util.find_spec(m.split(".")[0]) is None for m in needed[1:]):
        return None
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
            return lambda: (proc.terminate(), proc.wait())  # type: ignore[func-returns-value]
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    return None


def load(url: str, concurrency: int, requests: int, max_tokens: int) -> dict[str, float]:
    latencies: list[float] = []
    tokens: list[int] = []
    lock = threading.Lock()
    body = {"model": "bench", "messages": PROMPT, "max_tokens": max_tokens, "temperature": 0}

    def worker(count: int) -> None:
        with httpx.Client(timeout=600) as http:
            for _ in range(count):
                started = time.perf_counter()
                reply = http.post(f"{url}/v1/chat/completions", json=body).json()
                with lock:
                    latencies.append(time.perf_counter() - started)
                    tokens.append(int(reply["usage"]["completion_tokens"]))

    per_worker = max(1, requests // concurrency)
    threads = [threading.Thread(target=worker, args=(per_worker,)) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else []
    return {
        "tok_s": sum(tokens) / wall,
        "p50": statistics.median(latencies),
        "p95": cuts[94] if cuts else latencies[0],
    }


def direct(gguf: Path, requests: int, max_tokens: int) -> dict[str, float]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=4096, seed=0, verbose=False)
    latencies, tokens = [], 0
    started = time.perf_counter()
    for _ in range(requests):
        t0 = time.perf_counter()
        out: dict = llm.create_chat_completion(  # type: ignore[assignment]
            messages=PROMPT,  # type: ignore[arg-type]
            max_tokens=max_tokens,
            temperature=0,
        )
        latencies.append(time.perf_counter() - t0)
        tokens += int(out["usage"]["completion_tokens"])
    wall = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"tok_s": tokens / wall, "p50": statistics.median(latencies), "p95": cuts[94]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, help="GGUF to serve (default: a tiny llama)")
    parser.add_argument("--requests", type=int, default=16, help="requests per concurrency")
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    gguf = args.gguf or tiny_gguf(work)
    print(f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores; {gguf.name}")
    ours_port, anchor_port = free_port(), free_port()
    stop_ours = start_ours(gguf, ours_port)
    stop_anchor = start_llama_server(gguf, anchor_port)
    rows = []
    try:
        for conc in (1, 4, 16):
            requests = max(args.requests, conc)
            ours = load(f"http://127.0.0.1:{ours_port}", conc, requests, args.max_tokens)
            if stop_anchor is not None:
                anchor_name = "llama_cpp.server"
                anchor = load(f"http://127.0.0.1:{anchor_port}", conc, requests, args.max_tokens)
            else:
                anchor_name = "llama_cpp direct (no HTTP)"
                anchor = direct(gguf, requests, args.max_tokens) if conc == 1 else rows[0][2]
            rows.append((conc, ours, anchor, anchor_name))
    finally:
        stop_ours()
        if stop_anchor is not None:
            stop_anchor()
    print(f"\nanchor: {rows[0][3]}")
    header = "| concurrency | mlx-rsi tok/s | anchor tok/s | ratio | mlx-rsi p50 / p95 s |"
    print(header + " anchor p50 / p95 s |")
    print("|---|---|---|---|---|---|")
    for conc, ours, anchor, _name in rows:
        print(
            f"| {conc} | {ours['tok_s']:.1f} | {anchor['tok_s']:.1f} | "
            f"{ours['tok_s'] / anchor['tok_s']:.2f}× | {ours['p50']:.2f} / {ours['p95']:.2f} | "
            f"{anchor['p50']:.2f} / {anchor['p95']:.2f} |"
        )


if __name__ == "__main__":
    main()
