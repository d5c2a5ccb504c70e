"""`mlx-rsi versions`, `promote`, `rollback`, `diff` and `status` on a recorded registry.

The versions are recorded through the registry (the cycle's own functions); their fused
models are folders with a config.json, which is all the pointer commands look at. The
full loop with real tiny models is tests/test_eval.py.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from mlx_rsi import registry
from mlx_rsi.workspace import Workspace


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "220")  # rich tables unwrapped, as on a wide terminal


def eval_record(rate: float, promote: bool, reason: str) -> dict:
    primary = {
        "n": 12,
        "baseline_rate": 0.1,
        "candidate_rate": rate,
        "difference": rate - 0.1,
        "low": rate - 0.3,
        "high": rate,
        "confidence": 0.95,
        "wins": 5,
        "losses": 0,
    }
    return {
        "baseline": "base",
        "baseline_loss": 2.0,
        "candidate_loss": 1.5,
        "candidate_pass_rate": rate,
        "primary": primary,
        "promote": promote,
        "reason": reason,
        "suites": {"heldout": {"candidate_rate": rate, "candidate_violations": 0}},
    }


def setup(cli) -> Path:
    assert cli("init", "--no-standard-sources").exit_code == 0
    ws = Workspace(cli.workspace)
    conn = ws.store()
    try:
        for name, parent, rate, ok in (
            ("v1.1", "base", 0.5, True),
            ("v1.2", "v1.1", 0.8, True),
            ("v1.3", "v1.2", 0.7, False),
        ):
            reason = "primary suites improved" if ok else "guard 'general' regressed 90% -> 40%"
            registry.record_version(
                conn,
                registry.Version(
                    name,
                    "candidate" if ok else "rejected",
                    parent,
                    name,
                    None,
                    eval_record(rate, ok, reason),
                ),
            )
            if ok:
                (ws.models_dir / name / "hf").mkdir(parents=True)
                (ws.models_dir / name / "hf" / "config.json").write_text("{}")
                registry.promote(conn, name)
    finally:
        conn.close()
    return cli.workspace


def current(ws: Path) -> str | None:
    with sqlite3.connect(ws / "state.db") as conn:
        row = conn.execute("SELECT name FROM current_version").fetchone()
        statuses = dict(conn.execute("SELECT name, status FROM versions").fetchall())
    assert list(statuses.values()).count("current") == (1 if row else 0)
    return row[0] if row else None


def test_versions_table_shows_lineage_metrics_and_status(cli) -> None:
    setup(cli)
    out = cli("versions").output
    for text in ("v1.2 *", "current", "retired", "rejected", "80% (n=12)", "+70%", "vs base"):
        assert text in out, (text, out)


def test_rollback_moves_the_pointer_back_and_keeps_artifacts(cli) -> None:
    ws = setup(cli)
    assert current(ws) == "v1.2"
    result = cli("rollback")
    assert result.exit_code == 0, result.output
    assert "rollback: v1.1 is now current (was v1.2)" in result.output
    assert current(ws) == "v1.1"
    assert (ws / "models" / "v1.2" / "hf" / "config.json").is_file()  # artifacts kept
    assert "rolled_back" in cli("versions").output
    code, _out, err = cli.main("rollback")  # nothing earlier than v1.1
    assert code == 2 and "no earlier version to roll back to from v1.1" in err
    assert cli("rollback", "v1.2").exit_code == 0 and current(ws) == "v1.2"


def test_promote_refuses_a_rejected_version_without_force(cli) -> None:
    ws = setup(cli)
    code, _out, err = cli.main("promote", "v1.3")
    assert code == 2
    assert "v1.3 was not accepted by the gate: guard 'general' regressed 90% -> 40%" in err
    assert "--force" in err and err.strip().count("\n") == 0
    code, _out, err = cli.main("promote", "v9.9")
    assert code == 2 and "no version 'v9.9'" in err
    assert current(ws) == "v1.2"


def test_rollback_to_a_version_without_a_model_is_one_line(cli) -> None:
    ws = setup(cli)
    code, _out, err = cli.main("rollback", "v1.3")
    assert code == 1 and "v1.3 has no fused model" in err
    assert current(ws) == "v1.2"


def test_diff_lists_metric_and_data_differences(cli) -> None:
    setup(cli)
    out = cli("diff", "v1.1", "v1.2").output
    assert "metrics: v1.1 → v1.2" in out and "primary.success" in out
    assert "data: v1.1 → v1.2" in out and "config: no differences" in out
    code, _out, err = cli.main("diff", "v1.1", "v7.0")
    assert code == 2 and "no version 'v7.0'" in err


def test_status_shows_the_last_cycle_table(cli) -> None:
    ws = setup(cli)
    (ws / "datasets").mkdir(exist_ok=True)
    with sqlite3.connect(ws / "state.db") as conn:
        manifest = {
            "counts": {"train": 40, "valid": 5, "test": 12},
            "categories": {"train": {"security": 20, "deploy": 20, "identity": 3}},
        }
        conn.execute(
            "INSERT INTO datasets (name, path, manifest) VALUES ('v1.3', ?, ?)",
            (str(ws / "datasets" / "v1.3"), json.dumps(manifest)),
        )
    out = cli("status").output
    assert "last cycle" in out
    for text in (
        "v1.3 (rejected)",
        "2 (deploy, security)",
        "40 train / 5 valid / 12 test",
        "+60% success",
    ):
        assert text in out, (text, out)


def test_eval_without_a_version_is_one_line(cli) -> None:
    assert cli("init", "--no-standard-sources").exit_code == 0
    code, _out, err = cli.main("eval")
    assert code == 2 and "no version to evaluate: nothing is promoted yet" in err
    code, _out, err = cli.main("eval", "v4.2")
    assert code == 2 and "no version 'v4.2'" in err
    assert err.strip().count("\n") == 0
