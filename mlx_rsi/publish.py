"""Push an exported version to the Hugging Face Hub (the only network use of mlx-rsi).

``HfApi(endpoint=...).create_repo`` + ``upload_folder`` (mlx-lm's uploader calls
``upload_large_folder``, which huggingface_hub 2.x lacks: FACTS.md). All formats of
one repo go up in a single commit, so an interrupted upload leaves the repo as it
was; the version is then tagged. The model card's YAML header carries
``base_model``, ``license`` and tags. The token comes from ``HF_TOKEN`` or the
Hugging Face login file only — never argv — and is never printed or logged (error
texts are scrubbed of it). A version whose gate failed is refused unless forced.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlx_rsi import atomic, registry
from mlx_rsi.artifact_formats import expand_formats, folder_for
from mlx_rsi.config import Config
from mlx_rsi.errors import MlxRsiError, UsageError, WorkspaceError
from mlx_rsi.workspace import Workspace

log = logging.getLogger(__name__)
Report = Callable[[str], None]
PUBLISHABLE = ("current", "retired", "candidate")


class PublishError(MlxRsiError):
    """The Hub push cannot start or did not complete."""


@dataclass
class Upload:
    """One repo's share of a publish: which folders go where."""

    repo_id: str
    root: Path  # the folder upload_folder reads
    patterns: list[str]  # allow_patterns relative to root
    files: list[tuple[str, int]] = field(default_factory=list)  # (path in repo, bytes)
    root_card: str | None = None  # the repo's README.md, written just before the upload

    @property
    def size(self) -> int:
        return sum(n for _, n in self.files)


@dataclass
class PublishResult:
    version: str
    uploads: list[Upload]
    dry_run: bool
    urls: list[str] = field(default_factory=list)

    def summary(self) -> str:
        total = sum(u.size for u in self.uploads)
        repos = ", ".join(u.repo_id for u in self.uploads)
        verb = "would upload" if self.dry_run else "published"
        count = sum(len(u.files) for u in self.uploads)
        return f"publish: {verb} {self.version}: {count} files, {human_size(total)} → {repos}"


def publish_version(
    ws: Workspace,
    cfg: Config,
    version: str | None,
    *,
    repo_id: str | None = None,
    private: bool | None = None,
    formats: list[str] | None = None,
    dry_run: bool = False,
    force: bool = False,
    report: Report = log.info,
) -> PublishResult:
    """Upload ``version``'s exported formats to ``repo_id`` (default: publish.repo_id)."""
    repo = repo_id or cfg.publish.repo_id
    if not repo:
        raise UsageError(
            "no repo to publish to", hint="pass --repo ORG/NAME or set publish.repo_id"
        )
    check_repo_id(repo)
    name, record = _version(ws, version, force)
    out_dir = ws.models_dir / name
    chosen = _formats(cfg, record, formats)
    uploads = plan_uploads(out_dir, repo, chosen, cfg.publish.layout)
    result = PublishResult(name, uploads, dry_run)
    if dry_run:
        return result
    token = hub_token()
    keep_private = cfg.publish.private if private is None else private
    result.urls = [_push(cfg, upload, name, token, keep_private, report) for upload in uploads]
    report(result.summary())
    return result


def check_repo_id(repo: str) -> None:
    parts = repo.split("/")
    if len(parts) != 2 or not all(p and p not in (".", "..") for p in parts):
        raise UsageError(f"'{repo}' is not a Hub repo id", hint="use ORG/NAME, e.g. me/my-model")


def _version(ws: Workspace, version: str | None, force: bool) -> tuple[str, dict[str, Any]]:
    conn = ws.store()
    try:
        name = version or registry.current_version(conn)
        if name is None:
            raise WorkspaceError("no version has been promoted yet", hint="run `mlx-rsi train`")
        record = registry.get_version(conn, name)
    finally:
        conn.close()
    if record is None:
        raise WorkspaceError(f"no version '{name}'")
    failed = record.status not in PUBLISHABLE or record.eval.get("promote") is False
    if failed and not force:
        raise UsageError(
            f"{name} did not pass its evaluation gate (status: {record.status})",
            hint="publish a promoted version, or pass --force to publish it anyway",
        )
    return name, {"artifacts": record.artifacts, "status": record.status}


def _formats(cfg: Config, record: dict[str, Any], asked: list[str] | None) -> list[str]:
    exported = [f for f in record["artifacts"] if f not in ("adapter",)]
    wanted = asked or list(cfg.publish.formats)
    if not wanted:
        if not exported:
            raise UsageError(
                "nothing of this version was exported", hint="run `mlx-rsi export` first"
            )
        return exported
    chosen = expand_formats(wanted, cfg.export.gguf_types, cfg.export.mlx_quantize_bits)
    missing = [f for f in chosen if f not in exported]
    if missing:
        raise UsageError(
            f"not exported yet: {', '.join(missing)}",
            hint=f"run `mlx-rsi export --format {','.join(missing)}` first",
        )
    return chosen


def plan_uploads(out_dir: Path, repo: str, formats: list[str], layout: str) -> list[Upload]:
    """What goes where: exactly the files that will be sent, with their sizes."""
    folders = list(dict.fromkeys(folder_for(f) for f in formats))
    for folder in folders:
        if not (out_dir / folder).is_dir():
            raise UsageError(f"{out_dir / folder} is missing", hint="run `mlx-rsi export` again")
    if layout == "repo-per-format":
        uploads = [Upload(f"{repo}-{folder}", out_dir / folder, ["*"]) for folder in folders]
    else:
        patterns = [f"{folder}/**" for folder in folders]
        uploads = [Upload(repo, out_dir, patterns, root_card=_root_card(out_dir, folders))]
    for upload in uploads:
        upload.files = _listing(upload)
        if upload.root_card is not None:
            upload.files.insert(0, ("README.md", len(upload.root_card.encode("utf-8"))))
    return uploads


def _root_card(out_dir: Path, folders: list[str]) -> str:
    """The repo's front page: the card of the main format, pointing at the subfolders."""
    preferred = [f for f in ("hf", "mlx", "mlx-q8", "mlx-q4", "gguf") if f in folders]
    source = out_dir / (preferred or folders)[0] / "README.md"
    text = source.read_text(encoding="utf-8") if source.is_file() else ""
    listing = "".join(f"- [`{folder}/`]({folder}/)\n" for folder in folders)
    return f"{text.rstrip()}\n\n## Formats in this repo\n\n{listing}"


def _listing(upload: Upload) -> list[tuple[str, int]]:
    import fnmatch

    files = []
    for path in sorted(upload.root.rglob("*")):
        if not path.is_file() or any(
            p.startswith(".") for p in path.relative_to(upload.root).parts
        ):
            continue
        relative = path.relative_to(upload.root).as_posix()
        if any(fnmatch.fnmatch(relative, pattern) for pattern in upload.patterns):
            files.append((relative, path.stat().st_size))
    return files


def hub_token() -> str:
    """``HF_TOKEN`` or the token saved by ``hf auth login``; never from the command line."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not token:
        from huggingface_hub import constants

        try:
            token = Path(constants.HF_TOKEN_PATH).read_text(encoding="utf-8").strip()
        except OSError:
            token = ""
    if not token:
        raise PublishError(
            "no Hugging Face token found",
            hint="set HF_TOKEN in the environment or run `hf auth login` (never pass it as a flag)",
        )
    return token


def _push(
    cfg: Config, upload: Upload, version: str, token: str, private: bool, report: Report
) -> str:
    from huggingface_hub import HfApi

    endpoint = cfg.publish.endpoint or "https://huggingface.co"
    api = HfApi(endpoint=endpoint, token=token)
    where = f"{endpoint}/{upload.repo_id}"
    if upload.root_card is not None:
        atomic.write_text(upload.root / "README.md", upload.root_card)
        upload.patterns = ["README.md", *upload.patterns]
    with _hub_errors(where, token):
        api.create_repo(upload.repo_id, private=private, exist_ok=True, repo_type="model")
        report(
            f"publish: uploading {len(upload.files)} files ({human_size(upload.size)}) to {where}"
        )
        info = api.upload_folder(
            repo_id=upload.repo_id,
            folder_path=str(upload.root),
            allow_patterns=upload.patterns,
            commit_message=f"mlx-rsi: {version}",
        )
        api.create_tag(upload.repo_id, tag=version, tag_message=f"mlx-rsi {version}", exist_ok=True)
    report(f"publish: {upload.repo_id} tagged {version}")
    return str(getattr(info, "commit_url", where))


class _hub_errors:
    """Any failure talking to the Hub → one PublishError line without the token."""

    def __init__(self, where: str, token: str) -> None:
        self.where = where
        self.token = token

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, MlxRsiError) or not isinstance(exc, Exception):
            return
        raise PublishError(
            f"upload to {self.where} failed: {_describe(exc, self.token)}",
            hint="nothing was committed by the failed step; run the same `mlx-rsi publish` "
            "again to retry",
        ) from None


def _describe(exc: BaseException, token: str) -> str:
    name = type(exc).__name__
    if name == "OfflineModeIsEnabled":
        return "HF_HUB_OFFLINE is set (unset it to publish)"
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    text = f"server answered {status}: {first}" if status else f"{name}: {first}"
    return text.replace(token, "***") if token else text


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def dry_run_rows(result: PublishResult) -> list[tuple[str, str, str]]:
    """(repo, path in repo, size) for every file a real run would upload."""
    return [(u.repo_id, path, human_size(n)) for u in result.uploads for path, n in u.files]


def result_json(result: PublishResult) -> str:
    data = {
        "version": result.version,
        "dry_run": result.dry_run,
        "uploads": [
            {"repo": u.repo_id, "files": [{"path": p, "bytes": n} for p, n in u.files]}
            for u in result.uploads
        ],
        "urls": result.urls,
    }
    return json.dumps(data, indent=2)
