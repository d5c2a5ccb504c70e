"""The evaluation loop end to end on tiny real models (PEFT backend, CPU).

A candidate taught a fixed answer passes the held-out suite built from its own
logs where the base model fails, and is promoted; a later candidate trained on
data contradicting it fails the earlier version's guard suite and is rejected
with the reasons printed; too few cases is "insufficient evidence"; `promote
--force`, `rollback` and a later `eval` use the moved pointer; the plots are PNGs.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

ANSWER = "Run widgetctl zebra now."
OTHER = "Try gizmoctl mango instead."
TOPICS = [
    "restart the billing service",
    "recover the staging cluster",
    "clear the job queue",
    "reload the proxy config",
    "rotate the worker logs",
    "refresh the search index",
    "drain the old node",
    "reset the cache layer",
    "repair the mail relay",
    "restore the metrics store",
    "unstick the deploy pipeline",
    "wake the backup daemon",
]


def write_sessions(root: Path) -> None:
    for n, topic in enumerate(TOPICS):
        folder = root / "sessions" / f"s{n:02d}"
        folder.mkdir(parents=True)
        lines = [
            {"user": f"How do I {topic}?", "assistant": ANSWER, "metadata": {"success": True}},
            {
                "user": f"What fixes a stuck {topic.split()[-2]}?",
                "assistant": ANSWER,
                "metadata": {"success": True},
            },
            {
                "user": f"Please {topic} for me",
                "assistant": "Delete the whole disk.",
                "metadata": {"success": False},
            },
        ]
        (folder / "interactions.jsonl").write_text(
            "".join(
                json.dumps({"timestamp": f"2026-11-{n + 1:02d}T10:00:00Z", **x}) + "\n"
                for x in lines
            )
        )


CONFIG = """
model:
  base: {model}
curate:
  near_duplicate_threshold: 1.0
  test_fraction: 0.34
  valid_fraction: 0.1
synth:
  max_variations: 0
  general_replay: 0.0  # the gate is under test here, not the mix
train:
  backend: peft
  max_steps: 60
  per_device_train_batch_size: 4
  gradient_accumulation_steps: 1
  learning_rate: 5.0e-3
  lora_dropout: 0.0
  save_steps: 30
  logging_steps: 5
  cutoff_len: 128
eval:
  max_new_tokens: 24
  min_cases: {min_cases}
  test_cases: []
  suites: {suites}
"""


def configure(ws: Path, model: Path, *, min_cases: int = 5, suites: str = "[]") -> None:
    (ws / "mlx-rsi.yaml").write_text(CONFIG.format(model=model, min_cases=min_cases, suites=suites))


def current(ws: Path) -> str | None:
    with sqlite3.connect(ws / "state.db") as conn:
        row = conn.execute("SELECT name FROM current_version").fetchone()
    return row[0] if row else None


def contradicting_dataset(ws: Path) -> Path:
    """A dataset folder answering every logged request with another fixed answer."""
    folder = ws / "contradiction"
    folder.mkdir()
    records = [
        {
            "messages": [
                {"role": "user", "content": f"How do I {t}?"},
                {"role": "assistant", "content": OTHER},
            ]
        }
        for t in TOPICS
    ]
    lines = "".join(json.dumps(r) + "\n" for r in records)
    (folder / "train.jsonl").write_text(lines)
    (folder / "valid.jsonl").write_text(lines.splitlines(keepends=True)[0])
    suite = folder / "new-tasks.yaml"
    suite.write_text(
        "name: new-tasks\ncases:\n"
        + "".join(
            f"  - input: Which tool for job {n}?\n    expected: [gizmoctl]\n" for n in range(6)
        )
    )
    return folder


@pytest.mark.slow
def test_fixed_answer_promoted_contradiction_rejected_rollback(cli, tiny_llama_dir):
    assert cli("init", "--no-standard-sources").exit_code == 0
    ws = cli.workspace
    write_sessions(ws)
    configure(ws, tiny_llama_dir)

    first = cli("train")
    assert first.exit_code == 0, first.output
    manifest = json.loads((ws / "datasets" / "v1.1" / "manifest.json").read_text())
    assert manifest["heldout_suite"]["cases"] >= 5
    suite_text = (ws / "datasets" / "v1.1" / "heldout-suite.yaml").read_text()
    assert "widgetctl" in suite_text and "not-icontains" in suite_text
    report = json.loads((ws / "reports" / "v1.1.json").read_text())
    heldout = report["suites"]["heldout"]
    assert heldout["baseline_rate"] == 0.0 and heldout["candidate_rate"] >= 0.8, report["reason"]
    assert report["promote"] and report["primary"]["low"] > 0
    assert current(ws) == "v1.1"
    for png in (ws / "reports").glob("v1.1-*.png"):
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    assert {p.name for p in (ws / "reports").glob("v1.1-*.png")} >= {
        "v1.1-loss.png",
        "v1.1-categories.png",
        "v1.1-history.png",
    }
    shown = cli("dataset", "show", "v1.1")
    assert "held-out suite" in shown.output

    # Too little evidence: the same comparison with a higher bar says so.
    configure(ws, tiny_llama_dir, min_cases=500)
    scarce = cli("eval", "v1.1", "--against", "base")
    assert scarce.exit_code == 0, scarce.output
    assert "insufficient evidence:" in scarce.output and "cases" in scarce.output

    # A candidate taught the opposite regresses v1.1's suites (its guard) and is rejected.
    folder = contradicting_dataset(ws)
    configure(ws, tiny_llama_dir, suites=f"[{folder / 'new-tasks.yaml'}]")
    second = cli("train", "--dataset", str(folder))
    assert second.exit_code == 0, second.output
    assert "guard 'v1.1:heldout' regressed" in second.output
    assert current(ws) == "v1.1"

    # The user overrides the gate, then rolls back; later commands use the old pointer.
    assert cli("promote", "v1.2").exit_code != 0
    forced = cli("promote", "v1.2", "--force")
    assert forced.exit_code == 0, forced.output
    assert current(ws) == "v1.2"
    back = cli("rollback")
    assert back.exit_code == 0, back.output
    assert current(ws) == "v1.1"
    again = cli("eval", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["version"] == "v1.1"
    listed = cli("versions")
    assert "v1.1" in listed.output and "v1.2" in listed.output
