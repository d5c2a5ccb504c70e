"""Ingest benchmark: first ingest MB/s and unchanged-rescan time on a large generated corpus.

Generates Claude-Code-style JSONL (prompts, split assistant messages with thinking and
tool calls, tool results with file contents duplicated in ``toolUseResult`` as the tool
does, errors, rejections) into a temporary folder, then measures in the same run:

- the physical anchors: reading every line of the same files (binary, no parsing) and
  reading + ``orjson.loads`` of every line;
- the first ingest (detection, parsing, signals, redaction, SQLite) into a new workspace,
  ``--repeat`` times (a fresh workspace each time; best and median reported, with the
  CPU seconds beside the wall seconds: on a shared machine the gap is other processes);
- a rescan of the unchanged tree (every file skipped by ``stat``);
- an incremental pass after appending a turn to 1% of the files.

Run: ``python scripts/bench_ingest.py`` (defaults: ≥ 200 MB over ≥ 5,000 files);
``--files 500 --mb 30`` for a quick run, ``--keep --dir D`` to keep the corpus.
Not part of ``make test``; ``make bench-ingest`` runs it.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from mlx_rsi.config import Config
from mlx_rsi.ingest import IngestResult, ingest
from mlx_rsi.workspace import Workspace

WORDS = [
    "parser",
    "date",
    "config",
    "test",
    "file",
    "error",
    "value",
    "return",
    "import",
    "class",
    "function",
    "module",
    "request",
    "response",
    "token",
    "cache",
    "index",
    "query",
    "schema",
    "migration",
    "build",
    "deploy",
    "release",
    "user",
    "session",
    "model",
    "adapter",
    "dataset",
    "version",
    "export",
    "format",
    "check",
    "update",
    "fix",
    "add",
]
CODE_LINES = (
    "def {w}_{n}(value: str) -> int:",
    "    return len(value) + {n}",
    "class {W}{n}:",
    "    def __init__(self, {w}: int = {n}) -> None:",
    "        self.{w} = {w}",
    "import {w}",
    "from {w} import {W}",
    "    if {w} is None:",
    "        raise ValueError('{w} {n} is missing')",
    "    for item in {w}_items:",
    "        total += item.{w}",
    "# {w} {w} {n}",
    "    logger.info('{w} done in %s', elapsed)",
)


def code_snippet(rng: random.Random, lines: int) -> str:
    out = []
    for _ in range(lines):
        word = rng.choice(WORDS)
        line = rng.choice(CODE_LINES)
        out.append(line.format(w=word, W=word.capitalize(), n=rng.randint(0, 999)))
    return "\n".join(out)


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


@dataclass
class _Writer:
    rng: random.Random
    session: str
    cwd: str
    parent: str | None = None
    clock: float = 1_750_000_000.0

    def record(self, kind: str, message: dict[str, Any], **extra: Any) -> bytes:
        self.clock += self.rng.uniform(0.2, 20)
        uid = str(uuid.UUID(int=self.rng.getrandbits(128)))
        data = {
            "parentUuid": self.parent,
            "isSidechain": False,
            "userType": "external",
            "cwd": self.cwd,
            "sessionId": self.session,
            "version": "2.0.14",
            "gitBranch": "main",
            "type": kind,
            "message": message,
            "uuid": uid,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(self.clock)),
            **extra,
        }
        self.parent = uid
        return orjson.dumps(data) + b"\n"


def _turn(writer: _Writer, index: int) -> list[bytes]:
    rng = writer.rng
    lines = [writer.record("user", {"role": "user", "content": f"{sentence(rng, 12)} #{index}"})]
    for step in range(rng.randint(1, 4)):
        message_id = f"msg_{rng.getrandbits(64):016x}"
        call_id = f"toolu_{rng.getrandbits(64):016x}"

        def assistant(content: list[dict[str, Any]], mid: str = message_id) -> bytes:
            return writer.record(
                "assistant",
                {
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5",
                    "content": content,
                    "stop_reason": None,
                    "usage": {"input_tokens": rng.randint(10, 9000), "output_tokens": 120},
                },
                requestId=f"req_{rng.getrandbits(48):012x}",
            )

        if step == 0:
            lines.append(
                assistant(
                    [{"type": "thinking", "thinking": sentence(rng, 40), "signature": "x" * 64}]
                )
            )
        lines.append(assistant([{"type": "text", "text": sentence(rng, 25)}]))
        path = f"{writer.cwd}/src/{rng.choice(WORDS)}_{rng.randint(0, 99)}.py"
        lines.append(
            assistant(
                [{"type": "tool_use", "id": call_id, "name": "Read", "input": {"file_path": path}}]
            )
        )
        body = code_snippet(rng, rng.randint(20, 260))
        error = rng.random() < 0.05
        lines.append(
            writer.record(
                "user",
                {
                    "role": "user",
                    "content": [
                        {
                            "tool_use_id": call_id,
                            "type": "tool_result",
                            "content": body,
                            "is_error": error,
                        }
                    ],
                },
                toolUseResult={
                    "type": "text",
                    "file": {"filePath": path, "content": body, "numLines": body.count("\n") + 1},
                },
            )
        )
    lines.append(
        writer.record(
            "assistant",
            {
                "id": f"msg_{rng.getrandbits(64):016x}",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [{"type": "text", "text": sentence(rng, 60)}],
                "stop_reason": "end_turn",
            },
        )
    )
    return lines


def _summary(title: str, leaf: str) -> bytes:
    return orjson.dumps({"type": "summary", "summary": title, "leafUuid": leaf}) + b"\n"


def generate(root: Path, files: int, megabytes: int, seed: int = 0) -> tuple[int, int]:
    """Write the corpus; return (files, bytes)."""
    rng = random.Random(seed)
    target_total = megabytes * 1024 * 1024
    mean = target_total / files
    total, count = 0, 0
    while count < files or total < target_total:
        size_goal = min(max(rng.lognormvariate(0, 1.0) * mean / 1.65, 2_000), 4_000_000)
        project = root / f"-home-dev-project{count % 60}"
        project.mkdir(parents=True, exist_ok=True)
        session = str(uuid.UUID(int=rng.getrandbits(128)))
        writer = _Writer(rng, session, f"/home/dev/project{count % 60}")
        title = sentence(rng, 6)
        # the title's summary names the session's last record (its leaf), as Claude Code
        # writes it; a uuid is as long as the session id it is first written with
        chunks = [_summary(title, session)]
        size = len(chunks[0])
        turn = 0
        while size < size_goal:
            for line in _turn(writer, turn):
                chunks.append(line)
                size += len(line)
            turn += 1
        chunks[0] = _summary(title, writer.parent or session)
        (project / f"{session}.jsonl").write_bytes(b"".join(chunks))
        total += size
        count += 1
    return count, total


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.jsonl"))


def read_lines(paths: list[Path]) -> int:
    lines = 0
    for path in paths:
        with path.open("rb") as handle:
            for _ in handle:
                lines += 1
    return lines


def read_and_parse(paths: list[Path]) -> int:
    objects = 0
    for path in paths:
        with path.open("rb") as handle:
            for line in handle:
                orjson.loads(line)
                objects += 1
    return objects


def timed(func: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = func()
    return time.perf_counter() - start, value


def append_turns(paths: list[Path], fraction: float) -> int:
    rng = random.Random(1)
    chosen = paths[:: max(1, int(1 / fraction))]
    for path in chosen:
        writer = _Writer(rng, path.stem, "/home/dev/appended")
        with path.open("ab") as handle:
            handle.write(b"".join(_turn(writer, 999)))
    return len(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--mb", type=int, default=200, help="corpus size in MiB (at least)")
    parser.add_argument("--dir", type=Path, help="where to generate (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the generated folder")
    parser.add_argument("--repeat", type=int, default=3, help="first ingests to time (>= 1)")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="mlx-rsi-bench-", dir=args.dir))
    try:
        run(base, args.files, args.mb, max(1, args.repeat))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


@dataclass
class _First:
    """One timed first ingest."""

    wall: float
    cpu: float
    redaction: float
    result: IngestResult
    anchor: float  # seconds to read every line just before it (contention check)


def run(base: Path, files: int, megabytes: int, repeat: int = 3) -> None:
    corpus = base / "projects"
    seconds, (count, size) = timed(lambda: generate(corpus, files, megabytes))
    mib = size / 1024 / 1024
    print(f"generated {count} files, {mib:.1f} MiB in {seconds:.1f} s under {corpus}")
    print(f"load average at start: {_load()}")
    paths = all_files(corpus)
    rows: list[tuple[str, float, str]] = []

    t_lines, lines = timed(lambda: read_lines(paths))
    rows.append(
        ("anchor: read every line (binary)", t_lines, f"{mib / t_lines:.0f} MiB/s, {lines} lines")
    )
    t_parse, _ = timed(lambda: read_and_parse(paths))
    rows.append(("anchor: read + orjson.loads every line", t_parse, f"{mib / t_parse:.0f} MiB/s"))

    cfg = Config()
    spent = _time_redaction()
    firsts: list[_First] = []
    ws = Workspace(base / "ws")
    for attempt in range(repeat):
        if ws.root.exists():
            shutil.rmtree(ws.root)
        ws.create()
        anchor, _ = timed(lambda: read_lines(paths))
        spent[0] = 0.0
        cpu = time.process_time()
        wall, first = timed(lambda: ingest(ws, cfg, [corpus]))
        firsts.append(_First(wall, time.process_time() - cpu, spent[0], first, anchor))
        print(
            f"first ingest {attempt + 1}/{repeat}: {wall:.2f} s wall, {firsts[-1].cpu:.2f} s CPU,"
            f" {mib / wall:.1f} MiB/s (line-reading anchor just before: {mib / anchor:.0f} MiB/s)"
        )
    rows.extend(_first_rows(firsts, mib))
    t_rescan, rescan = timed(lambda: ingest(ws, cfg, [corpus]))
    rows.append(("rescan, nothing changed", t_rescan, f"{rescan.files_unchanged} files unchanged"))
    appended = append_turns(paths, 0.01)
    t_append, again = timed(lambda: ingest(ws, cfg, [corpus]))
    rows.append((f"after appending a turn to {appended} files", t_append, _counts(again)))

    width = max(len(r[0]) for r in rows)
    print(f"\n{'measurement'.ljust(width)}  {'seconds':>8}  result")
    for name, secs, note in rows:
        print(f"{name.ljust(width)}  {secs:8.2f}  {note}")
    db = sum(p.stat().st_size for p in ws.root.glob("state.db*"))
    print(f"\nstate.db: {db / 1024 / 1024:.0f} MiB; cpu: {os.cpu_count()} cores (ingest uses one)")
    print(f"load average at end: {_load()}")
    print("targets: first ingest >= 50 MiB/s, unchanged rescan < 1 s")


def _first_rows(firsts: list[_First], mib: float) -> list[tuple[str, float, str]]:
    best = min(firsts, key=lambda f: f.wall)
    median = statistics.median(f.wall for f in firsts)
    n = len(firsts)
    rows = [
        (
            f"first ingest (all stages), best of {n}",
            best.wall,
            f"{mib / best.wall:.1f} MiB/s ({best.cpu:.2f} s CPU); {_counts(best.result)}",
        ),
        (f"first ingest, median of {n}", median, f"{mib / median:.1f} MiB/s"),
    ]
    without = mib / (best.wall - best.redaction)
    rows.append(
        (
            "  of which redaction (best run)",
            best.redaction,
            f"{mib / best.redaction:.0f} MiB/s; ingest without it: {without:.1f} MiB/s",
        )
    )
    return rows


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _time_redaction() -> list[float]:
    """Accumulate the seconds spent in redact_session (instrumented, not changed)."""
    import mlx_rsi.ingest as redact  # the name ingest calls, bound when it is imported

    spent = [0.0]
    real = redact.redact_session

    def timed_redact(session: Any, cfg: Any) -> Any:
        start = time.perf_counter()
        try:
            return real(session, cfg)
        finally:
            spent[0] += time.perf_counter() - start

    redact.redact_session = timed_redact
    return spent


def _counts(result: IngestResult) -> str:
    return (
        f"{result.files_read} files read, {result.new_messages} new messages, "
        f"{result.new_interactions} interactions, {result.new_answers} answers, "
        f"{sum(result.redactions.values())} redactions"
    )


if __name__ == "__main__":
    main()
