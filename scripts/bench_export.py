"""Export benchmark: f16 GGUF of the embedded Gemma-3-270M, our writer vs llama.cpp's converter.

Both run in the same invocation on the same cached HF conversion
(``mlx_rsi.basemodel.ensure_base_model``), alternating, each in a fresh process so
import time counts for both. The anchor is llama.cpp's own ``convert_hf_to_gguf.py``
(it ships inside the llama-cpp-python sdist and is not installable: pass
``--llama-cpp DIR``, the sdist's ``vendor/llama.cpp`` folder — e.g. after
``pip download --no-deps --no-binary :all: llama-cpp-python`` and unpacking; its
code is never copied here). Without it only our writer is timed. Wall and CPU
seconds are reported (on a shared machine the gap is other processes), with the
ratio to the anchor and whether each file loads in llama.cpp and gives the same
greedy tokens as transformers.

Run: ``python scripts/bench_export.py --llama-cpp /tmp/llama.cpp [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PROMPTS = ["The capital of France is", "def add(a, b):\n    return"]


@dataclass
class Run:
    name: str
    wall: list[float]
    cpu: list[float]
    size: int
    parity: str


def timed(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of a child process (CPU: user + system of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def ours_command(model: Path, out: Path) -> list[str]:
    code = (
        "import sys; from pathlib import Path; from mlx_rsi.export.gguf import write_gguf; "
        "write_gguf(Path(sys.argv[1]), Path(sys.argv[2]), 'f16')"
    )
    return [sys.executable, "-c", code, str(model), str(out)]


def anchor_command(llama_cpp: Path, model: Path, out: Path) -> list[str]:
    script = llama_cpp / "convert_hf_to_gguf.py"
    return [sys.executable, str(script), str(model), "--outfile", str(out), "--outtype", "f16"]


def parity(path: Path, model: Path) -> str:
    from mlx_rsi.export.parity import check_gguf, reference

    result = check_gguf(path, "f16", reference(model, PROMPTS))
    return "same tokens" if result.ok else f"differs ({result.agreement:.0%})"


def measure_all(jobs: list[tuple[str, list[str], Path]], model: Path, repeat: int) -> list[Run]:
    """Each job ``repeat`` times, alternating between jobs, then each file's parity."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in jobs}
    for _ in range(repeat):
        for name, command, out in jobs:
            out.unlink(missing_ok=True)
            times[name].append(timed(command))
    return [
        Run(
            name,
            [w for w, _ in times[name]],
            [c for _, c in times[name]],
            out.stat().st_size,
            parity(out, model),
        )
        for name, _, out in jobs
    ]


def table(runs: list[Run], anchor: Run | None) -> str:
    load = os.getloadavg()[0]
    lines = [
        f"f16 GGUF of Gemma-3-270M, {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{os.cpu_count()} cores, load average {load:.1f}",
        "",
        "| writer | best wall s | median wall s | CPU s | vs llama.cpp | file MB | parity |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        best = min(run.wall)
        ratio = f"{min(anchor.wall) / best:.2f}x faster" if anchor and run is not anchor else "-"
        if anchor is not None and run is anchor:
            ratio = "1.00 (anchor)"
        lines.append(
            f"| {run.name} | {best:.1f} | {statistics.median(run.wall):.1f} | "
            f"{min(run.cpu):.1f} | {ratio} | {run.size / 1e6:.0f} | {run.parity} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-cpp", type=Path, help="llama.cpp source folder (the anchor)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the measures here")
    args = parser.parse_args(argv)

    from mlx_rsi.basemodel import ensure_base_model

    model = ensure_base_model()
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        if args.llama_cpp is not None:
            out = Path(tmp) / "llama-cpp.gguf"
            command = anchor_command(args.llama_cpp, model, out)
            jobs.append(("llama.cpp convert_hf_to_gguf.py", command, out))
        out = Path(tmp) / "ours.gguf"
        jobs.append(("mlx-rsi", ours_command(model, out), out))
        runs = measure_all(jobs, model, args.repeat)
    anchor = runs[0] if args.llama_cpp is not None else None
    text = table(runs, anchor)
    sys.stdout.write(text + "\n")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in runs], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
