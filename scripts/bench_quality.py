"""Does the loop make the real model better? One table on a realistic corpus.

The corpus (scripts/quality_corpus/: 7 topics of a fictional team's project, logs in
four formats with successes, failures, rejections and corrections) is ingested into
a fresh workspace; then, on the embedded Gemma-3-270M with the PEFT backend:

- ``default``: mlx-rsi's default cycle (curation, synthesis, the default training
  settings including ``train.auto``, the gate), i.e. ``mlx-rsi train``;
- ``all``: the same training on every logged answer (failed and corrected ones too,
  no dedup, no synthesis);
- ``success``: the same training on every answer *marked* successful (the seed
  collector's ``metadata.success``, thumbs up), no other curation;
- ``base``: the base model.

Every row is judged on the same suites, the default cycle's: the held-out suite
built from its held-out sessions, the hand-written ``quality_corpus/heldout.yaml``
(new questions never asked in the logs) and ``eval.test_cases``; the ``all`` and
``success`` rows never train on the default cycle's valid or test sessions, nor on a
request that nearly repeats a held-out one (the held-out suite's own rule). Columns:
primary success, its change over the base model with the paired bootstrap 95% CI,
the default row against each other row (CI), violations (must-not assertions
broken, guards included), and minutes (training + evaluation).

    python scripts/bench_quality.py                       # all rows (~1 h on 2 CPU cores)
    python scripts/bench_quality.py --no-auto --out /tmp/bq
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CORPUS = REPO / "scripts" / "quality_corpus"
log = logging.getLogger("bench_quality")


@dataclass
class Row:
    name: str
    examples: int
    report: dict[str, Any]  # EvalReport.to_dict()
    minutes: float

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{self.name}.json").write_text(json.dumps(dataclasses.asdict(self)))


def load_rows(folder: Path) -> list[Row]:
    return [Row(**json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))]


class BaseAnswers:
    """The backend, with the base model's answers and losses taken from the default row's
    report: greedy decoding gives the same answers again, so each row generates only its
    own candidate's (the base model's are the same for every row)."""

    def __init__(self, inner: Any, default: dict[str, Any], model_dir: Path) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = str(model_dir)
        self.answers = {c["input"]: c["baseline_answer"] for c in default["cases"]}
        self.base_loss = default.get("baseline_loss")

    def generate(self, model_dir: Path, adapter_dir: Path | None, prompts: Any, **kw: Any) -> Any:
        texts = [p[-1]["content"] for p in prompts]
        mine = adapter_dir is None and str(model_dir) == self.model
        if mine and all(t in self.answers for t in texts):
            return [self.answers[t] for t in texts]
        return self.inner.generate(model_dir, adapter_dir, prompts, **kw)

    def loss(self, model_dir: Path, adapter_dir: Path | None, split: Path, **kw: Any) -> Any:
        if adapter_dir is None and str(model_dir) == self.model and self.base_loss is not None:
            return self.base_loss
        return self.inner.loss(model_dir, adapter_dir, split, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def variant(cfg: Any, name: str) -> Any:
    """The curate/synth settings of a baseline row (training settings unchanged)."""
    threshold = {"all": 0.0, "success": 1.0}[name]
    curate = dataclasses.replace(cfg.curate, threshold=threshold, near_duplicate_threshold=1.0)
    synth = dataclasses.replace(
        cfg.synth, max_variations=0, include_identity=False, general_replay=0.0
    )
    return dataclasses.replace(cfg, curate=curate, synth=synth)


def without_leaks(examples: list[Any], test_split: Path) -> list[Any]:
    """``examples`` minus those that nearly repeat a held-out request.

    The default cycle's curation already keeps one copy of a repeated request, and the
    held-out suite skips requests that repeat its training data; the baseline rows skip
    dedup, so a copy of a held-out request asked again in another session would be
    trained on and the row judged on what it memorized. The held-out rule
    (``heldout.NearDuplicates``) applies to every row alike.
    """
    from mlx_rsi.dataset import read_split, record
    from mlx_rsi.eval.heldout import NearDuplicates, from_record

    held_out = NearDuplicates(
        a for a in (from_record(r) for r in read_split(test_split)) if a is not None
    )
    kept = []
    for example in examples:
        answered = from_record(record(example))
        if answered is None or answered not in held_out:
            kept.append(example)
    return kept


def write_config(ws_root: Path, model: str, auto: bool, max_steps: int | None) -> None:
    suite = CORPUS / "heldout.yaml"
    steps = f"  max_steps: {max_steps}\n" if max_steps else ""
    (ws_root / "mlx-rsi.yaml").write_text(
        f"model:\n  base: {model}\ntrain:\n  backend: peft\n  auto: {str(auto).lower()}\n"
        f"{steps}eval:\n  suites: [{suite}]\n"
    )


def run_default(ws: Any, cfg: Any, say: Callable[[str], None]) -> Row:
    from mlx_rsi.cycle import run_cycle
    from mlx_rsi.lock import WorkspaceLock

    started = time.monotonic()
    with WorkspaceLock(ws.root, "bench_quality"):
        result = run_cycle(
            ws, cfg, report=say, on_train_event=_progress(say), ingest_paths=[CORPUS / "logs"]
        )
    manifest = json.loads((ws.datasets_dir / result.dataset / "manifest.json").read_text())
    examples = manifest["counts"]["train"]
    minutes = (time.monotonic() - started) / 60
    assert result.evaluation is not None, "the cycle did not evaluate"
    return Row("default", examples, result.evaluation.to_dict(), minutes)


def run_baseline(
    ws: Any,
    cfg: Any,
    name: str,
    dataset_dir: Path,
    default: dict[str, Any],
    say: Callable[[str], None],
) -> Row:
    from backends.base import get_backend
    from mlx_rsi import autotune
    from mlx_rsi.curate import curate_sessions
    from mlx_rsi.dataset import record
    from mlx_rsi.evaluate import EvalTarget, ModelRef, evaluate_and_gate
    from mlx_rsi.modelpath import resolve_base_model
    from mlx_rsi.session_store import load_sessions
    from mlx_rsi.training import spec_from_config

    started = time.monotonic()
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    held = set(manifest["sessions"]["valid"]) | set(manifest["sessions"]["test"])
    conn = ws.store()
    try:
        curated = curate_sessions(load_sessions(conn), variant(cfg, name))
    finally:
        conn.close()
    train = without_leaks(
        [e for e in curated.examples if e.session_id not in held], dataset_dir / "test.jsonl"
    )
    folder = ws.root / "bench" / name
    if folder.exists():  # a row interrupted earlier: start it again
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(record(e)) + "\n" for e in train))
    shutil.copyfile(dataset_dir / "valid.jsonl", folder / "valid.jsonl")
    say(
        f"{name}: training on {len(train)} examples ({curated.summary()}; "
        f"{len(curated.examples) - len(train)} in held-out sessions or repeating them)"
    )
    model_dir = resolve_base_model(cfg.base_model, ws.root)
    backend = get_backend(cfg.train.backend)
    spec = autotune.with_min_steps(spec_from_config(cfg.train, model_dir), cfg.train, len(train))
    result = autotune.train(backend, spec, cfg.train, folder, folder / "run", _progress(say))
    target = EvalTarget(
        version=f"bench-{name}",
        candidate=ModelRef(name, model_dir, result.adapter_dir),
        baseline=ModelRef("base", model_dir),
        dataset_dir=dataset_dir,
        run_dir=folder / "run",
    )
    cached = BaseAnswers(backend, default, model_dir)
    report = evaluate_and_gate(ws, cfg, cached, target, keep_suites=False)  # type: ignore[arg-type]
    say(report.summary())
    return Row(name, len(train), report.to_dict(), (time.monotonic() - started) / 60)


def _progress(say: Callable[[str], None]) -> Callable[[Any], None]:
    def on_event(event: Any) -> None:
        if event.kind in ("eval", "end") or (event.kind == "step" and event.step % 10 == 0):
            loss = f" loss {event.loss:.3f}" if event.loss is not None else ""
            val = f" val {event.val_loss:.3f}" if event.val_loss is not None else ""
            say(f"  {event.kind} {event.step}/{event.total_steps}{loss}{val}")

    return on_event


def _primary(report: dict[str, Any], side: str) -> dict[tuple[str, str], bool]:
    return {
        (c["suite"], c["id"]): c[f"{side}_pass"] for c in report["cases"] if c["kind"] == "primary"
    }


def _violations(report: dict[str, Any], side: str) -> int:
    return sum(bool(c[f"{side}_violations"]) for c in report["cases"])


def _suite_rate(report: dict[str, Any], suite: str, side: str) -> str:
    score = report["suites"].get(suite)
    return f"{score[f'{side}_rate']:.0%}" if score else "-"


def table(rows: list[Row], seed: int) -> list[str]:
    """The markdown table (rows hold report dicts, so saved rows render the same)."""
    from mlx_rsi.eval.stats import paired_bootstrap

    default = next(r for r in rows if r.name == "default").report
    ours = _primary(default, "candidate")
    keys = sorted(ours)
    base = _primary(default, "baseline")
    suites = sorted({c["suite"] for c in default["cases"] if c["kind"] == "primary"})
    head = [
        "row",
        "train examples",
        "primary success",
        *[f"{s} success" for s in suites],
        "Δ vs base (95% CI)",
        "default vs row (95% CI)",
        "violations",
        "minutes",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def pct(values: dict[tuple[str, str], bool]) -> str:
        return f"{sum(values[k] for k in keys) / len(keys):.0%}"

    def ci(before: dict[tuple[str, str], bool], after: dict[tuple[str, str], bool]) -> str:
        d = paired_bootstrap([before[k] for k in keys], [after[k] for k in keys], seed=seed)
        return f"{d.difference:+.0%} [{d.low:+.0%}, {d.high:+.0%}]"

    base_cells = [
        "base",
        "0",
        pct(base),
        *[_suite_rate(default, s, "baseline") for s in suites],
        "-",
        ci(base, ours),
        str(_violations(default, "baseline")),
        "-",
    ]
    lines.append("| " + " | ".join(base_cells) + " |")
    for row in rows:
        mine = _primary(row.report, "candidate")
        cells = [
            row.name,
            str(row.examples),
            pct(mine),
            *[_suite_rate(row.report, s, "candidate") for s in suites],
            ci(base, mine),
            "-" if row.name == "default" else ci(mine, ours),
            str(_violations(row.report, "candidate")),
            f"{row.minutes:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = subprocess.run(
            ["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        cpu = model or cpu
    except OSError:
        pass
    import os

    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores ({cpu})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: temporary)")
    parser.add_argument("--rows", default="default,all,success", help="rows besides base")
    parser.add_argument("--no-auto", action="store_true", help="train.auto off for every row")
    parser.add_argument("--max-steps", type=int, default=None, help="smoke test: steps per run")
    parser.add_argument("--table-only", action="store_true", help="render the saved rows in --out")
    parser.add_argument(
        "--resume", action="store_true", help="run only the rows not saved in --out"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("matplotlib", "httpx", "mlx_rsi", "backends"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-quality-"))
    if not args.table_only:
        run_rows(args, out)
    rows = load_rows(out / "rows")
    order = {"all": 0, "success": 1, "default": 2}
    rows.sort(key=lambda r: order.get(r.name, 9))
    header = (out / "header.txt").read_text().strip()
    text = "\n".join([header, "", *table(rows, seed=0)])
    (out / "bench_quality.md").write_text(text + "\n")
    sys.stdout.write(text + "\n")


def run_rows(args: argparse.Namespace, out: Path) -> None:
    from mlx_rsi.config import load_config
    from mlx_rsi.workspace import Workspace

    if not (CORPUS / "logs").is_dir():
        subprocess.run([sys.executable, str(CORPUS / "build_corpus.py")], check=True)
    ws = Workspace(out / "ws")
    saved = out / "rows"
    if not args.resume:
        for old in (ws.root, saved):
            if old.exists():
                shutil.rmtree(old)
        ws.create()
        write_config(ws.root, args.model, auto=not args.no_auto, max_steps=args.max_steps)
        auto = "off" if args.no_auto or args.max_steps else "on"
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        (out / "header.txt").write_text(
            f"{started}, {machine()}, model {args.model}, backend peft (CPU), train.auto {auto}\n"
        )
    cfg = load_config(ws.config_path)
    say = log.info
    if not (saved / "default.json").is_file():
        run_default(ws, cfg, say).save(saved)
    default = json.loads((saved / "default.json").read_text())["report"]
    dataset_dir = ws.datasets_dir / default["version"]
    for name in [r for r in args.rows.split(",") if r and r != "default"]:
        if not (saved / f"{name}.json").is_file():
            run_baseline(ws, cfg, name, dataset_dir, default, say).save(saved)


if __name__ == "__main__":
    main()
