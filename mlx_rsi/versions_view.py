"""Read-only views of the version registry: the versions table, diffs, the last cycle.

Commands render these rows; nothing here writes. A version's metrics come from the
evaluation stored with it (``versions.eval``), its run's result and its dataset's
manifest, so every number shown is one the cycle recorded at the time.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlx_rsi import registry


@dataclass(frozen=True)
class VersionRow:
    name: str
    status: str
    parent: str
    dataset: str
    run: str
    success: str  # primary success of the version (its evaluation)
    delta: str  # vs the baseline it was evaluated against
    loss: str  # held-out loss (Δ)
    created: str
    current: bool


def _pct(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, int | float) else "-"


def version_rows(conn: sqlite3.Connection) -> list[VersionRow]:
    current = registry.current_version(conn)
    rows = []
    for v in registry.list_versions(conn):
        e = v.eval or {}
        primary = e.get("primary") or {}
        before, after = e.get("baseline_loss"), e.get("candidate_loss")
        loss = "-"
        if isinstance(before, float) and isinstance(after, float):
            loss = f"{after:.4f} ({after - before:+.4f})"
        delta = "-"
        if primary:
            delta = (
                f"{primary['difference']:+.0%} [{primary['low']:+.0%}, {primary['high']:+.0%}]"
                f" vs {e.get('baseline', '?')}"
            )
        rows.append(
            VersionRow(
                name=v.name,
                status=v.status,
                parent=v.parent or "-",
                dataset=v.dataset or "-",
                run=v.run_id or "-",
                success=f"{_pct(primary.get('candidate_rate'))} (n={primary.get('n', 0)})"
                if primary
                else "-",
                delta=delta,
                loss=loss,
                created=(v.created_at or "")[:19],
                current=v.name == current,
            )
        )
    return rows


# --------------------------------------------------------------------------- diff


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _changes(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, str, str]]:
    keys = sorted(set(a) | set(b))
    return [(k, _show(a.get(k)), _show(b.get(k))) for k in keys if a.get(k) != b.get(k)]


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return json.dumps(value)
    return "-" if value is None else str(value)


def _run_config(conn: sqlite3.Connection, run_id: str | None) -> dict[str, Any]:
    if not run_id:
        return {}
    row = conn.execute("SELECT out_dir FROM runs WHERE id = ?", (run_id,)).fetchone()
    path = Path(row[0]) / "train.yaml" if row else None
    if path is None or not path.is_file():
        return {}
    loaded = yaml.safe_load(path.read_text()) or {}
    return _flatten(loaded) if isinstance(loaded, dict) else {}


def _manifest(conn: sqlite3.Connection, name: str | None) -> dict[str, Any]:
    if not name:
        return {}
    row = conn.execute("SELECT manifest FROM datasets WHERE name = ?", (name,)).fetchone()
    return json.loads(row[0]) if row else {}


def _data_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    if not manifest:
        return {}
    out = {f"examples.{k}": v for k, v in manifest.get("counts", {}).items()}
    for split, counts in manifest.get("categories", {}).items():
        out.update({f"categories.{split}.{k}": v for k, v in counts.items()})
    out["sessions.train"] = len(manifest.get("sessions", {}).get("train", []))
    out["heldout_suite.cases"] = (manifest.get("heldout_suite") or {}).get("cases")
    return out


def _metric_summary(e: dict[str, Any]) -> dict[str, Any]:
    if not e:
        return {}
    out = {
        "primary.success": e.get("candidate_pass_rate"),
        "heldout_loss": e.get("candidate_loss"),
        "baseline": e.get("baseline"),
        "promote": e.get("promote"),
    }
    for name, s in (e.get("suites") or {}).items():
        out[f"suite.{name}.success"] = s.get("candidate_rate")
        out[f"suite.{name}.violations"] = s.get("candidate_violations")
    return out


def diff_versions(
    conn: sqlite3.Connection, a: str, b: str
) -> dict[str, list[tuple[str, str, str]]]:
    """Config, data and metric differences between two recorded versions."""
    from mlx_rsi.errors import UsageError

    found = {n: registry.get_version(conn, n) for n in (a, b)}
    missing = [n for n, v in found.items() if v is None]
    if missing:
        raise UsageError(f"no version '{missing[0]}'", hint="see `mlx-rsi versions`")
    va, vb = found[a], found[b]
    assert va is not None and vb is not None
    data_a = _data_summary(_manifest(conn, va.dataset))
    data_b = _data_summary(_manifest(conn, vb.dataset))
    return {
        "config": _changes(_run_config(conn, va.run_id), _run_config(conn, vb.run_id)),
        "data": _changes({"dataset": va.dataset, **data_a}, {"dataset": vb.dataset, **data_b}),
        "metrics": _changes(_metric_summary(va.eval), _metric_summary(vb.eval)),
    }


# --------------------------------------------------------------------------- last cycle

_INTERACTIONS = re.compile(r"(\d+) interactions")


def last_cycle(conn: sqlite3.Connection) -> list[tuple[str, str]] | None:
    """The seed's expected-results table for the latest version's cycle (None: no cycle)."""
    versions = [v for v in registry.list_versions(conn) if v.dataset]
    if not versions:
        return None
    v = versions[-1]
    manifest = _manifest(conn, v.dataset)
    counts = manifest.get("counts", {})
    categories = sorted(
        {c for split in manifest.get("categories", {}).values() for c in split}
        - {"identity", "everyday"}
    )
    run = conn.execute("SELECT result FROM runs WHERE id = ?", (v.run_id,)).fetchone()
    result = json.loads(run[0]) if run and run[0] else {}
    e = v.eval or {}
    primary = e.get("primary") or {}
    curate = conn.execute(
        "SELECT summary FROM events WHERE stage = 'curate' AND status = 'done' "
        "ORDER BY id DESC LIMIT 1"
    ).fetchone()
    match = _INTERACTIONS.search(curate[0] or "") if curate else None
    improvement = "-"
    if primary:
        improvement = (
            f"{primary['difference']:+.0%} success "
            f"(CI {primary['low']:+.0%}..{primary['high']:+.0%}, n={primary['n']})"
        )
    loss = result.get("final_loss")
    return [
        ("version", f"{v.name} ({v.status})"),
        ("interactions", match.group(1) if match else "-"),
        ("categories", f"{len(categories)} ({', '.join(categories)})" if categories else "-"),
        (
            "examples",
            f"{counts.get('train', 0)} train / {counts.get('valid', 0)} valid / "
            f"{counts.get('test', 0)} test",
        ),
        ("final loss", f"{loss:.4f}" if isinstance(loss, float) else "-"),
        ("improvement", improvement),
        (
            "promoted",
            "yes" if v.status in ("current", "retired") else f"no ({e.get('reason', '-')})",
        ),
    ]
