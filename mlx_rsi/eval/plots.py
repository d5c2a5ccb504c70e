"""The report's PNG plots (matplotlib, Agg backend: no display needed).

- loss curves of the candidate's run (``metrics.jsonl``: train loss, val loss);
- success per category, baseline beside candidate;
- primary success rate across versions (the history a user scrolls back through).
Each returns the file it wrote, or None when there is nothing to plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from mlx_rsi import atomic
from mlx_rsi.eval.scores import Score


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    atomic.write_bytes(path, buffer.getvalue())
    return path


def loss_curves(metrics_path: Path, out: Path) -> Path | None:
    if not metrics_path.is_file():
        return None
    train: list[tuple[int, float]] = []
    valid: list[tuple[int, float]] = []
    for line in metrics_path.read_bytes().splitlines():
        if not line.strip():
            continue
        record = orjson.loads(line)
        if record.get("kind") == "eval" and record.get("val_loss") is not None:
            valid.append((record["step"], record["val_loss"]))
        elif record.get("loss") is not None:
            train.append((record["step"], record["loss"]))
    if not train and not valid:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for points, label in ((train, "train loss"), (valid, "validation loss")):
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("training run")
    ax.legend()
    return _save(fig, out)


def category_success(
    categories: dict[str, Score], baseline: str, candidate: str, out: Path
) -> Path | None:
    if not categories:
        return None
    plt = _pyplot()
    names = list(categories)
    xs = range(len(names))
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(names) + 2), 3.5))
    width = 0.4
    ax.bar(
        [x - width / 2 for x in xs],
        [categories[n].baseline_rate for n in names],
        width,
        label=baseline,
    )
    ax.bar(
        [x + width / 2 for x in xs],
        [categories[n].candidate_rate for n in names],
        width,
        label=candidate,
    )
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success")
    ax.set_title("success per category")
    ax.legend()
    return _save(fig, out)


def history(points: Sequence[tuple[str, float, bool]], out: Path) -> Path | None:
    """``points``: (version, primary success, promoted) in version order."""
    if not points:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(points) + 2), 3.5))
    xs = list(range(len(points)))
    ax.plot(xs, [p[1] for p in points], color="grey", linewidth=1)
    for x, (_name, rate, promoted) in zip(xs, points, strict=True):
        ax.scatter([x], [rate], color="tab:green" if promoted else "tab:red", zorder=3)
    ax.set_xticks(xs)
    ax.set_xticklabels([p[0] for p in points])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("primary success")
    ax.set_title("versions (green: promoted, red: rejected)")
    return _save(fig, out)
