"""`mlx-rsi dataset`: list, show, build and export dataset versions."""

from __future__ import annotations

from pathlib import Path

import click

from mlx_rsi.commands import config_option, pass_app, writes_workspace
from mlx_rsi.context import AppContext
from mlx_rsi.ui import UI


@click.group()
def dataset() -> None:
    """Dataset versions (datasets/vX.Y: train/valid/test + manifest)."""


@dataset.command("list")
@pass_app
def list_(app: AppContext) -> None:
    """List the workspace's datasets."""
    from mlx_rsi.dataset import list_datasets

    ui = UI(app.quiet)
    rows = [
        (
            d.name,
            d.manifest.get("parent") or "-",
            d.manifest["counts"]["train"],
            d.manifest["counts"]["valid"],
            d.manifest["counts"]["test"],
            d.manifest["split"]["mode"],
            d.path,
        )
        for d in list_datasets(app.workspace)
    ]
    if not rows:
        ui.line(
            "no datasets yet (`mlx-rsi curate` then `mlx-rsi dataset build`, or `mlx-rsi train`)"
        )
        return
    ui.table("datasets", ["name", "parent", "train", "valid", "test", "split", "path"], rows)


@dataset.command()
@click.argument("name")
@pass_app
def show(app: AppContext, name: str) -> None:
    """Show a dataset's manifest summary (NAME: a version or a folder)."""
    from mlx_rsi.dataset import load_dataset

    ui = UI(app.quiet)
    found = load_dataset(app.workspace, name)
    manifest = found.manifest
    if not manifest:
        ui.line(f"{found.path}: a dataset folder without manifest.json")
        return
    ui.line(found.summary())
    for key in ("categories", "origins"):
        rows = [(split, _pairs(counts)) for split, counts in manifest[key].items()]
        ui.table(key, ["split", key], rows)
    ui.line(f"sources: {_pairs(manifest['sources'])}")
    ui.line(f"scores: {_pairs(manifest['score_buckets'])}")
    ui.line(f"redactions: {_pairs(manifest['redactions']) or 'none'}")
    ui.line(f"config hash: {manifest['config_hash']}")
    suite = manifest.get("heldout_suite") or {}
    skipped = _pairs(suite.get("skipped") or {})
    skipped = f"; requests skipped: {skipped}" if skipped else ""
    if suite.get("cases"):
        ui.line(
            f"held-out suite: {suite['cases']} cases ({suite.get('must_not', 0)} with must-not) "
            f"in {_pairs(suite.get('categories', {}))} → {found.path / suite['file']}{skipped}"
        )
    else:
        ui.line(f"held-out suite: none (no test sessions with a usable answer{skipped})")


@dataset.command()
@click.option("--name", help="Dataset name (default: the next version, e.g. v1.2).")
@config_option
@pass_app
@writes_workspace
def build(app: AppContext, name: str | None) -> None:
    """Build a dataset version from the examples the last `mlx-rsi curate` stored."""
    from mlx_rsi.curate import load_examples
    from mlx_rsi.dataset import build_dataset
    from mlx_rsi.errors import DatasetError
    from mlx_rsi.names import check_name
    from mlx_rsi.registry import next_version_name

    if name is not None:
        check_name(name, "dataset name")
    ui = UI(app.quiet)
    conn = app.workspace.store()
    try:
        examples = load_examples(conn)
        name = name or next_version_name(conn)
    finally:
        conn.close()
    if not examples:
        raise DatasetError("no curated examples stored", hint="run `mlx-rsi curate` first")
    ui.line(build_dataset(app.workspace, app.config(), examples, name=name).summary())


@dataset.command()
@click.argument("name")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["llamafactory", "mlx", "openai"]),
    required=True,
    help="Target layout.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder to write (must be empty or new, unless --force).",
)
@click.option("--force", is_flag=True, help="Write into OUT even when it holds files.")
@pass_app
@writes_workspace(output="out")
def export(app: AppContext, name: str, fmt: str, out: Path, force: bool) -> None:
    """Export dataset NAME for LLaMA-Factory, mlx-lm or OpenAI fine-tuning."""
    from mlx_rsi import atomic
    from mlx_rsi.dataset import export_dataset, load_dataset
    from mlx_rsi.errors import TargetExistsError

    if atomic.occupied(out) and not force:
        raise TargetExistsError(
            f"{out} is not empty", hint="choose an empty folder, or pass --force to write into it"
        )
    ui = UI(app.quiet)
    found = load_dataset(app.workspace, name)
    written = export_dataset(found.path, fmt, out, name=found.name.replace(".", "_"))
    ui.line(f"exported {found.name} as {fmt}: {len(written)} files → {out}")


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())
