"""The export stage: one version → the formats asked for, each checked, then recorded.

The fused model (:mod:`mlx_rsi.export.fuse`) is the source of every format. Each
format is written under a temporary name and renamed into place only after its
check passed (HF loads in transformers, MLX loads and generates in mlx-lm, every
GGUF loads in llama.cpp and matches transformers' greedy tokens — f16/q8_0 exactly),
so nothing half-written ever looks complete. Results (paths, parity) go into the
version's record. ``mlx-rsi export`` and the cycle call :func:`export_version`.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlx_rsi import atomic, registry
from mlx_rsi.artifact_formats import expand_formats, folder_for, gguf_type
from mlx_rsi.config import Config
from mlx_rsi.errors import MlxRsiError, ModelError, WorkspaceError
from mlx_rsi.export import card as cards
from mlx_rsi.export.fuse import check_model_files, fuse_adapter, saved_dtype
from mlx_rsi.export.parity import ParityError, ParityResult, Reference
from mlx_rsi.workspace import Workspace, now_iso

log = logging.getLogger(__name__)
Report = Callable[[str], None]
Progress = Callable[[str, int, int], None]
RECORD = "export.json"
BASE_NAMES = ("base", registry.BASE_VERSION)


class ExportError(MlxRsiError):
    """An export cannot be written as asked (existing output, disk full, failed check)."""


@dataclass
class ExportResult:
    version: str
    out_dir: Path
    artifacts: dict[str, str] = field(default_factory=dict)
    parity: list[ParityResult] = field(default_factory=list)

    def summary(self) -> str:
        names = ", ".join(self.artifacts) or "nothing"
        return f"export: {self.version} → {self.out_dir} ({names})"


@dataclass
class _Job:
    """Everything one export needs, resolved once."""

    ws: Workspace
    cfg: Config
    version: registry.Version | None
    name: str
    base_dir: Path
    fused_dir: Path
    out_dir: Path
    formats: list[str]
    force: bool
    info: cards.CardInfo
    report: Report
    progress: Progress | None
    reference: Reference | None = None


def export_version(
    ws: Workspace,
    cfg: Config,
    version: str | None,
    formats: list[str] | tuple[str, ...] | None,
    out: Path | None = None,
    report: Report = log.info,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> ExportResult:
    """Export ``version`` (default: current; ``base``: the base model) in ``formats``."""
    chosen = expand_formats(
        formats or cfg.export.formats, cfg.export.gguf_types, cfg.export.mlx_quantize_bits
    )
    if not chosen:
        raise ExportError("no export format asked for", hint="e.g. --format gguf-q8_0,mlx")
    conn = ws.store()
    try:
        job = _plan(ws, conn, cfg, version, chosen, out, force, report, progress)
        _check_targets(job)
        result = ExportResult(job.name, job.out_dir)
        with _disk_errors(job.out_dir):
            _write_all(job, result)
        _record(conn, job, result)
    finally:
        conn.close()
    return result  # its summary is the caller's to print (the cycle's stage line, a table)


def _plan(
    ws: Workspace,
    conn: sqlite3.Connection,
    cfg: Config,
    name: str | None,
    formats: list[str],
    out: Path | None,
    force: bool,
    report: Report,
    progress: Progress | None,
) -> _Job:
    from mlx_rsi.modelpath import resolve_base_model

    name = name or registry.current_version(conn)
    if name is None:
        raise WorkspaceError(
            "no version has been promoted yet",
            hint="run `mlx-rsi train`, or export the base model with `mlx-rsi export base`",
        )
    version = None if name in BASE_NAMES else registry.get_version(conn, name)
    if name not in BASE_NAMES and version is None:
        known = ", ".join(v.name for v in registry.list_versions(conn)) or "none"
        raise WorkspaceError(f"no version '{name}'", hint=f"known versions: {known}")
    base_dir = resolve_base_model(cfg.base_model, ws.root)
    out_dir = Path(out) if out is not None else ws.models_dir / name
    fused = base_dir if version is None else _fused(ws, conn, cfg, version, report)
    check_model_files(fused)
    info = _card_info(conn, cfg, version, name, base_dir, formats)
    label = registry.BASE_VERSION if version is None else name
    return _Job(
        ws, cfg, version, label, base_dir, fused, out_dir, formats, force, info, report, progress
    )


def _fused(
    ws: Workspace, conn: sqlite3.Connection, cfg: Config, version: registry.Version, report: Report
) -> Path:
    """``models/vX/hf`` (fused by the cycle), fusing the adapter now if it is missing."""
    from backends.base import get_backend
    from mlx_rsi.modelpath import resolve_base_model

    target = ws.models_dir / version.name / "hf"
    if (target / "config.json").is_file():
        return target
    adapter = version.artifacts.get("adapter") or _run_adapter(conn, version.run_id)
    if not adapter:
        raise ModelError(f"version {version.name} has no adapter to fuse")
    report(f"export: fusing the adapter of {version.name} into the base")
    base_dir = resolve_base_model(cfg.base_model, ws.root)
    return fuse_adapter(get_backend(cfg.train.backend), base_dir, Path(adapter), target)


def _run_adapter(conn: sqlite3.Connection, run_id: str | None) -> str | None:
    if run_id is None:
        return None
    row = conn.execute("SELECT adapter_dir FROM runs WHERE id = ?", (run_id,)).fetchone()
    return str(row[0]) if row and row[0] else None


def _card_info(
    conn: sqlite3.Connection,
    cfg: Config,
    version: registry.Version | None,
    name: str,
    base_dir: Path,
    formats: list[str],
) -> cards.CardInfo:
    base_id, license_id, license_text = cards.base_identity(cfg.base_model, base_dir)
    slug = base_id.rsplit("/", 1)[-1]
    info = cards.CardInfo(
        name=f"{slug}-rsi-{name}" if version else slug,
        version=name,
        base_model=base_id,
        license=license_id,
        license_text=license_text,
        formats=formats,
        repo_id=cfg.publish.repo_id,
    )
    if version is None:
        info.fine_tuned = False
        return info
    info.parent = version.parent
    info.evaluation = {k: version.eval.get(k) for k in cards.EVAL_KEYS if k in version.eval}
    info.dataset = version.dataset
    info.dataset_counts = _dataset_manifest(conn, version.dataset)
    info.training = _run_spec(conn, version.run_id)
    if cfg.publish.include_examples:
        info.examples = _first_examples(conn, version.dataset)
    return info


def _dataset_manifest(conn: sqlite3.Connection, dataset: str | None) -> dict[str, Any]:
    row = conn.execute("SELECT manifest FROM datasets WHERE name = ?", (dataset,)).fetchone()
    manifest = json.loads(row[0]) if row else {}
    return {k: manifest[k] for k in ("counts", "sessions") if k in manifest}


def _run_spec(conn: sqlite3.Connection, run_id: str | None) -> dict[str, Any]:
    row = conn.execute("SELECT backend, spec FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        return {}
    spec = json.loads(row[1] or "{}")
    return {"backend": row[0], **{k: v for k, v in spec.items() if k in cards.TRAINING_KEYS}}


def _first_examples(conn: sqlite3.Connection, dataset: str | None, n: int = 3) -> list[Any]:
    row = conn.execute("SELECT path FROM datasets WHERE name = ?", (dataset,)).fetchone()
    if row is None:
        return []
    path = Path(row[0]) / "train.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()[:n]
    except OSError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


# --------------------------------------------------------------------------- targets


def _targets(job: _Job) -> dict[str, Path]:
    """Where each format lands (GGUF: one file each; ollama: the Modelfile)."""
    out: dict[str, Path] = {}
    for fmt in job.formats:
        if fmt.startswith("gguf-"):
            out[fmt] = job.out_dir / "gguf" / gguf_file_name(job, gguf_type(fmt))
        elif fmt == "ollama":
            out[fmt] = job.out_dir / "gguf" / "Modelfile"
        else:
            out[fmt] = job.out_dir / folder_for(fmt)
    return out


def gguf_file_name(job: _Job, qtype: str) -> str:
    return f"{job.info.name}-{qtype}.gguf"


def _check_targets(job: _Job) -> None:
    """Write only into an empty folder, or over existing outputs with --force."""
    if job.force:
        return
    explicit = job.out_dir != job.ws.models_dir / job.name
    if explicit and job.out_dir.exists() and any(job.out_dir.iterdir()):
        raise ExportError(
            f"output folder {job.out_dir} is not empty",
            hint="choose an empty or new folder, or pass --force to replace what is there",
        )
    for fmt, target in _targets(job).items():
        if fmt == "hf" and target == job.fused_dir and "hf" not in _recorded(job.out_dir):
            continue  # the cycle's fused model, completed in place by the hf export
        if target.exists():
            raise ExportError(
                f"{target} exists ({fmt} was exported before)", hint="pass --force to replace it"
            )


def _recorded(out_dir: Path) -> dict[str, str]:
    """The formats an earlier export into ``out_dir`` wrote (its export.json)."""
    try:
        artifacts = json.loads((out_dir / RECORD).read_text()).get("artifacts")
    except (OSError, ValueError, AttributeError):
        return {}
    return artifacts if isinstance(artifacts, dict) else {}


@contextmanager
def _disk_errors(out_dir: Path) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ExportError(
                f"disk full while exporting to {out_dir}; nothing half-written was left",
                hint="free some space (or use --out on another disk) and run export again",
            ) from e
        raise ExportError(f"export to {out_dir} failed: {e}") from e


# --------------------------------------------------------------------------- writers


def _write_all(job: _Job, result: ExportResult) -> None:
    targets = _targets(job)
    job.out_dir.mkdir(parents=True, exist_ok=True)
    for fmt in job.formats:
        if fmt == "hf":
            _export_hf(job, targets[fmt])
        elif fmt.startswith("mlx"):
            _export_mlx(job, fmt, targets[fmt])
        elif fmt.startswith("gguf-"):
            result.parity.append(_export_gguf(job, fmt, targets[fmt]))
            job.info.parity = [p.to_dict() for p in result.parity]
        else:
            continue
        result.artifacts[fmt] = str(targets[fmt])
    if any(f.startswith("gguf-") for f in job.formats):
        _gguf_folder_files(job, result, targets)


def _export_hf(job: _Job, target: Path) -> None:
    from mlx_rsi.export.hf import verify_hf, write_hf

    with atomic.staged_dir(target, replace=True) as tmp:
        write_hf(job.fused_dir, tmp, job.base_dir)
        _write_card(job, tmp, "transformers")
        text = verify_hf(tmp)
        _readable(tmp)
    job.report(f"export: hf → {target} (loads in transformers; generated {text!r})")


def _export_mlx(job: _Job, fmt: str, target: Path) -> None:
    from mlx_rsi.export.mlx import verify_mlx, write_mlx

    bits = int(fmt.removeprefix("mlx-q")) if fmt != "mlx" else None
    with atomic.staged_dir(target, replace=True) as tmp:
        write_mlx(job.fused_dir, tmp / "model", bits, saved_dtype(job.base_dir))
        for item in (tmp / "model").iterdir():
            item.rename(tmp / item.name)
        (tmp / "model").rmdir()
        _write_card(job, tmp, "mlx")
        text = verify_mlx(tmp)
        _readable(tmp)
    job.report(f"export: {fmt} → {target} (loads in mlx-lm; generated {text!r})")


def _readable(path: Path) -> None:
    """Exports are for others to read: the umask's usual modes, not the owner-only ones
    temporary files and folders are created with."""
    mask = os.umask(0)
    os.umask(mask)
    for item in [path, *(path.rglob("*") if path.is_dir() else [])]:
        item.chmod((0o777 if item.is_dir() else 0o666) & ~mask)


def _export_gguf(job: _Job, fmt: str, target: Path) -> ParityResult:
    from mlx_rsi.export.gguf import write_gguf
    from mlx_rsi.export.parity import check_gguf, reference

    qtype = gguf_type(fmt)
    staging = target.with_name(f".{target.name}.unchecked.tmp")
    _remove_leftovers(target)

    def tick(done: int, total: int) -> None:
        if job.progress is not None:
            job.progress(f"{fmt}", done, total)

    try:
        write_gguf(job.fused_dir, staging, qtype, tick)
        if job.reference is None:
            job.reference = reference(job.fused_dir)
        parity = check_gguf(staging, qtype, job.reference)
        parity.file = target.name
        if not parity.ok:
            raise ParityError(
                f"{fmt} does not match transformers: {parity.summary()}",
                hint="the file was not kept; please report this with the model's config.json",
            )
        staging.replace(target)
        _readable(target)
    finally:
        staging.unlink(missing_ok=True)
    job.report(f"export: {fmt} → {target.name}: {parity.summary().split(': ', 1)[1]}")
    return parity


def _remove_leftovers(target: Path) -> None:
    """Temporaries of an earlier export of ``target`` that was killed (kill -9)."""
    if target.parent.is_dir():
        for path in target.parent.glob(f"*.{target.name}.*"):
            if path.name.startswith("."):
                path.unlink(missing_ok=True)


def _gguf_folder_files(job: _Job, result: ExportResult, targets: dict[str, Path]) -> None:
    folder = job.out_dir / "gguf"
    files = sorted(p.name for p in folder.glob("*.gguf"))
    if "ollama" in job.formats:
        chosen = _ollama_gguf(job)
        template, eos = _chat_template(job.fused_dir)
        atomic.write_text(targets["ollama"], cards.render_modelfile(chosen, template, eos))
        _readable(targets["ollama"])
        result.artifacts["ollama"] = str(targets["ollama"])
        files.append("Modelfile")
    atomic.write_text(folder / "README.md", cards.render_card(job.info, "gguf", files))
    _readable(folder / "README.md")


def _ollama_gguf(job: _Job) -> str:
    for qtype in ("q4_k_m", "q8_0", "f16", "bf16"):
        if f"gguf-{qtype}" in job.formats:
            return gguf_file_name(job, qtype)
    return gguf_file_name(job, gguf_type(next(f for f in job.formats if f.startswith("gguf-"))))


def _chat_template(model_dir: Path) -> tuple[str | None, str | None]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    return template, tokenizer.eos_token


def _write_card(job: _Job, folder: Path, library: str) -> None:
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != "README.md")
    atomic.write_text(folder / "README.md", cards.render_card(job.info, library, files))
    _readable(folder / "README.md")


def _record(conn: sqlite3.Connection, job: _Job, result: ExportResult) -> None:
    record = {
        "version": job.name,
        "exported_at": now_iso(),
        "formats": job.formats,
        "artifacts": {**_recorded(job.out_dir), **result.artifacts},
        "parity": [p.to_dict() for p in result.parity],
    }
    atomic.write_text(job.out_dir / RECORD, json.dumps(record, indent=2) + "\n")
    _readable(job.out_dir / RECORD)
    if job.version is None:
        return
    version = registry.get_version(conn, job.version.name) or job.version
    version.artifacts.update(result.artifacts)
    version.eval = {**version.eval, "export": {k: record[k] for k in ("exported_at", "parity")}}
    registry.record_version(conn, version)
