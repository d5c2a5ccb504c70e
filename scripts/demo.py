"""`make demo`: the recursion on the real embedded model, twice, in minutes.

Creates ./demo-workspace with the embedded Gemma-3-270M as its base (converted from
the PyPI package once, ~2 min, then cached), watches ``inbox/`` for session logs,
and runs two real cycles with ``mlx-rsi train`` — the defaults, backend auto:

1. examples/demo/batch1/ (ten work sessions in five log formats) lands in inbox/
   → ingest → curate (secrets redacted) → synthesize → train → evaluate on the
   held-out suite built from whole held-out sessions → gate → export → v1.1;
2. examples/demo/batch2/ arrives in inbox/ (as ``mlx-rsi watch`` would see it)
   → the same cycle on everything → v1.2, judged against v1.1 on the same suite.

Then it prints the seed-style table per cycle, the summary table (suite success
per version with the paired CI, loss, minutes per stage, artifact sizes), the
reports' paths and the commands to chat with the result. Two settings differ from
the defaults: ``train.auto: false`` (one learning rate instead of three trials:
the three would triple the training that already dominates, ~20 minutes on 2 CPU
cores) and ``export.formats`` adds GGUF q8_0 and its ollama Modelfile (+ MLX on a
Mac) to HF. ``train --estimate`` runs before the first cycle; each cycle prints its
own estimate after its first steps.

    python scripts/demo.py                  # what `make demo` runs
    python scripts/demo.py --keep           # reuse ./demo-workspace (finish an interrupted run)
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

EXAMPLES = REPO / "examples" / "demo"
BATCHES = ("batch1", "batch2")
SECRETS = (  # what examples/demo/content.py plants; none may reach a dataset
    "sk-proj-Qm3Zt8Lw1Vx5",
    "sk-proj-Xy7Qw2Lm9Rt5",
    "Hunter2-staging",
    "ghp_R4nD0mT0k3n",
    "AKIAZ7QW3LM9RT5VB8NC",
    "maria.keller@",
    "Pr0d-Db-Pa55w0rd",
)


def demo_config() -> str:
    """The workspace's mlx-rsi.yaml: defaults except what the 15-minute budget needs."""
    formats = ["hf", "gguf-q8_0", "ollama"] + (["mlx"] if _apple_silicon() else [])
    return (
        "# `make demo` (scripts/demo.py). Everything not set here is the default.\n"
        "model:\n  base: gemma3-270m\n  name: orca-assistant\n"
        "sources:\n  watch:\n    - path: inbox\n      format: auto\n"
        "synth:\n  identity:\n    name: orca-assistant\n    org: the orca team\n"
        "train:\n  auto: false        # one learning rate, not three trials (3x the training)\n"
        f"export:\n  formats: [{', '.join(formats)}]\n"
    )


def _apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


@dataclass
class Cycle:
    batch: str
    version: str = ""
    seconds: float = 0.0
    estimate: str = ""  # `train --estimate`'s line
    estimate_seconds: float = 0.0  # what `train --estimate` itself took
    report: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)
    seed_table: list[tuple[str, str]] = field(default_factory=list)  # `status`'s last cycle


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", type=Path, default=REPO / "demo-workspace")
    parser.add_argument("--keep", action="store_true", help="keep an existing demo workspace")
    parser.add_argument("--max-steps", type=int, help="shorter training (smoke runs)")
    args = parser.parse_args()
    ws: Path = args.workspace.resolve()
    started = time.monotonic()
    if ws.exists() and not args.keep:
        shutil.rmtree(ws)
    cli = [str(Path(sys.executable).with_name("mlx-rsi")), "--workspace", str(ws)]
    if not (ws / "state.db").exists():
        subprocess.run([*cli, "init", "--no-standard-sources", "--force"], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    (ws / "mlx-rsi.yaml").write_text(demo_config())
    base_seconds = prepare_base_model()
    cycles = []
    for batch in BATCHES:
        cycle = run_batch(cli, ws, batch, args.max_steps)
        if cycle is None:
            return 1
        cycles.append(cycle)
    leaked = check_redaction(ws)
    summarize(ws, cycles, base_seconds, time.monotonic() - started, leaked)
    return 1 if leaked else 0


def prepare_base_model() -> float:
    """Convert the embedded model once (cached); a spinner while it runs."""
    from mlx_rsi.basemodel import default_cache_dir, ensure_base_model
    from mlx_rsi.ui import UI

    started = time.monotonic()
    cached = (default_cache_dir() / "gemma3-270m").is_dir()
    what = "base model: Gemma-3-270M (cached)" if cached else "base model: converting Gemma-3-270M"
    with UI().progress(what, total=None) as bar:
        folder = ensure_base_model()
        bar.finish()
    seconds = time.monotonic() - started
    _say(f"base model ready in {seconds:.0f}s: {folder}")
    return seconds


def run_batch(cli: list[str], ws: Path, batch: str, max_steps: int | None) -> Cycle | None:
    """Drop a batch of sessions into the watched folder and run one cycle on it."""
    inbox = ws / "inbox" / batch
    shutil.copytree(EXAMPLES / batch, inbox, dirs_exist_ok=True)
    files = sum(1 for p in inbox.rglob("*") if p.is_file())
    _say(f"\n=== {batch}: {files} session logs arrive in {inbox.parent} ===")
    cycle = Cycle(batch)
    extra = ["--max-steps", str(max_steps)] if max_steps else []
    if batch == BATCHES[0]:  # the cycles print their own estimate after their first steps
        started = time.monotonic()
        measured = subprocess.run(
            [*cli, "train", "--estimate", *extra], check=True, stdout=subprocess.PIPE, text=True
        )
        cycle.estimate = measured.stdout.strip().splitlines()[-1]
        _say(cycle.estimate)
        cycle.estimate_seconds = time.monotonic() - started
    started = time.monotonic()
    done = subprocess.run([*cli, "train", *extra])
    cycle.seconds = time.monotonic() - started
    if done.returncode != 0:
        _say(f"the {batch} cycle failed (exit {done.returncode}); rerun with --keep to finish it")
        return None
    cycle.version, cycle.report, cycle.stages = last_cycle(ws)
    cycle.seed_table = seed_table(ws)
    return cycle


def seed_table(ws: Path) -> list[tuple[str, str]]:
    """The seed guide's expected-results rows for the latest cycle (as `mlx-rsi status`)."""
    from mlx_rsi.versions_view import last_cycle as last_cycle_rows
    from mlx_rsi.workspace import Workspace

    conn = Workspace(ws).store()
    try:
        return last_cycle_rows(conn) or []
    finally:
        conn.close()


def last_cycle(ws: Path) -> tuple[str, dict[str, Any], dict[str, float]]:
    """The latest cycle's version, its evaluation report and seconds per stage."""
    import sqlite3

    conn = sqlite3.connect(ws / "state.db")
    try:
        (cycle_id, version) = conn.execute(
            "SELECT id, version FROM cycles ORDER BY rowid DESC LIMIT 1"
        ).fetchone()
        stages = stage_seconds(conn, cycle_id)
    finally:
        conn.close()
    report_path = ws / "reports" / f"{version}.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    return version, report, stages


def stage_seconds(conn: Any, cycle_id: str) -> dict[str, float]:
    rows = conn.execute(
        "SELECT stage, started_at, finished_at FROM events"
        " WHERE cycle_id = ? AND status = 'done' AND finished_at IS NOT NULL",
        (cycle_id,),
    ).fetchall()
    out: dict[str, float] = {}
    for stage, start, end in rows:
        out[stage] = out.get(stage, 0.0) + _seconds(start, end)
    return out


def _seconds(start: Any, end: Any) -> float:
    from datetime import datetime

    def parse(value: Any) -> float:
        if isinstance(value, int | float):
            return float(value)
        return datetime.fromisoformat(str(value)).timestamp()

    return parse(end) - parse(start)


def check_redaction(ws: Path) -> list[str]:
    """Planted secrets found anywhere a dataset, report or model card is kept."""
    leaked = []
    for folder in ("datasets", "reports", "models"):
        for path in (ws / folder).rglob("*"):
            if path.is_file() and path.suffix in (".jsonl", ".json", ".md", ".yaml"):
                text = path.read_text(errors="replace")
                leaked += [f"{s} in {path}" for s in SECRETS if s in text]
    return leaked


def summarize(
    ws: Path, cycles: list[Cycle], base_seconds: float, total: float, leaked: list[str]
) -> None:
    from mlx_rsi.ui import UI

    ui = UI()
    for cycle in cycles:
        ui.table(f"Cycle {cycle.version} ({cycle.batch})", ["result", "value"], cycle.seed_table)
    rows = [_version_row(c) for c in cycles]
    ui.table(
        "Results (held-out suite: cases from whole held-out sessions, never trained on)",
        COLUMNS,
        rows,
    )
    stage_names = ["curate", "dataset", "train", "evaluate", "fuse", "export"]
    ui.table(
        "Minutes per stage",
        ["version", *stage_names],
        [[c.version, *[_minutes(c.stages.get(s)) for s in stage_names]] for c in cycles],
    )
    for cycle in (c for c in cycles if c.estimate):
        actual = _minutes(cycle.stages.get("train"))
        _say(f"{cycle.version}: {cycle.estimate} [{cycle.estimate_seconds:.0f}s to measure]; "
             f"actual train stage {actual} min")  # fmt: skip
    ui.table("Artifacts", ["path", "size"], artifact_rows(ws))
    _say(f"\nbase model preparation: {base_seconds / 60:.1f} min; whole demo: {total / 60:.1f} min")
    _say("secrets planted in the sessions found in datasets/reports/models: "
         + (", ".join(leaked) if leaked else "none"))  # fmt: skip
    for cycle in cycles:
        _say(f"report {cycle.version}: {ws / 'reports' / (cycle.version + '.md')}")
    current = current_version(ws)
    if current is None:
        _say("\nNo version was promoted: the gate saw no evidence of improvement (reports).")
        return
    print_chat_commands(ws, current)


def current_version(ws: Path) -> str | None:
    from mlx_rsi import registry
    from mlx_rsi.workspace import Workspace

    conn = Workspace(ws).store()
    try:
        return registry.current_version(conn)
    finally:
        conn.close()


COLUMNS = ["version", "parent", "primary success", "change (95% CI)", "held-out loss", "promoted",
           "minutes"]  # fmt: skip


def _version_row(cycle: Cycle) -> list[str]:
    report = cycle.report
    primary = report.get("primary") or {}
    return [
        cycle.version,
        str(report.get("baseline", "")),
        _rate(primary),
        _ci(primary),
        _loss(report),
        "yes" if report.get("promote") else "no",
        f"{cycle.seconds / 60:.1f}",
    ]


def _rate(primary: dict[str, Any]) -> str:
    if "n" not in primary:
        return "-"
    before, after = primary["baseline_rate"], primary["candidate_rate"]
    return f"{before:.0%} → {after:.0%} (n={primary['n']})"


def _ci(primary: dict[str, Any]) -> str:
    if "difference" not in primary:
        return "-"
    return f"{primary['difference']:+.0%} [{primary['low']:+.0%}, {primary['high']:+.0%}]"


def _loss(report: dict[str, Any]) -> str:
    before, after = report.get("baseline_loss"), report.get("candidate_loss")
    if before is None or after is None:
        return "-"
    return f"{before:.3f} → {after:.3f}"


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}"


def artifact_rows(ws: Path) -> list[list[str]]:
    rows = []
    for version in sorted(p for p in (ws / "models").iterdir() if p.is_dir()):
        for item in sorted(version.iterdir()):
            size = _size(item)
            rows.append([str(item.relative_to(ws)), f"{size / 1e6:.0f} MB"])
    return rows


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def print_chat_commands(ws: Path, version: str) -> None:
    folder = ws / "models" / version
    gguf = next(folder.rglob("*.gguf"), None)
    _say("\nChat with the result:")
    _say(f"  .venv/bin/mlx-rsi --workspace {ws} chat {version}")
    modelfile = next(folder.rglob("Modelfile"), None)
    if modelfile is not None:
        _say(f"  ollama create orca-assistant -f {modelfile} && ollama run orca-assistant")
    if gguf is not None:
        _say(f"  llama-cli -m {gguf} -cnv")


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
