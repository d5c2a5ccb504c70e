"""The training settings recorded beside an adapter, and what scoring and generation take from them.

An adapter was trained on chats rendered one way (a chat template, a cutoff, which
assistant turns carry loss); scoring it or generating with it another way measures
something else. So every backend writes ``chat_template_used.json`` into each adapter
folder it produces (final adapter, keep-best copy, checkpoints) and reads it back in
``loss``, ``generate`` and ``fuse``. The file name is the one earlier versions used for
the template alone; such files still read (their other settings take the defaults),
and MLX adapters written before the file existed fall back to the same keys in their
``adapter_config.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SETTINGS_FILE = "chat_template_used.json"
MLX_CONFIG = "adapter_config.json"
DEFAULT_FALLBACK = "alpaca"
DEFAULT_CUTOFF = 2048
DEFAULT_TRAIN_ON = "assistant"


@dataclass(frozen=True)
class TrainedSettings:
    """How an adapter's training rendered, cut and masked its chats."""

    template: str | None = None  # "native" or a fallback name; None: not recorded
    fallback_template: str = DEFAULT_FALLBACK
    cutoff_len: int = DEFAULT_CUTOFF
    train_on: str = DEFAULT_TRAIN_ON

    def chat_template(self, requested: str) -> str:
        """The template to render with: the trained one unless the caller names another."""
        if requested == "auto" and self.template is not None:
            return self.template
        return requested


def write_settings(adapter_dir: Path, settings: TrainedSettings) -> None:
    """Record ``settings`` in an (existing, usually staging) adapter folder."""
    record = {k: v for k, v in asdict(settings).items() if v is not None}
    (Path(adapter_dir) / SETTINGS_FILE).write_text(json.dumps(record, sort_keys=True) + "\n")


def read_settings(
    adapter_dir: Path | None, fallback_template: str | None = None
) -> TrainedSettings:
    """The settings an adapter was trained with; defaults where nothing is recorded.

    ``fallback_template``: the fallback to assume when the adapter records none (and
    with no adapter at all), e.g. the configured ``train.fallback_template``.
    """
    recorded: dict[str, Any] = {}
    if adapter_dir is not None:
        legacy = _read_json(Path(adapter_dir) / MLX_CONFIG)
        recorded = {
            "template": legacy.get("trained_template"),
            "fallback_template": legacy.get("fallback_template"),
            "cutoff_len": legacy.get("cutoff_len"),
            "train_on": legacy.get("train_on"),
        }
        recorded.update(_read_json(Path(adapter_dir) / SETTINGS_FILE))
    defaults = TrainedSettings(fallback_template=fallback_template or DEFAULT_FALLBACK)
    return TrainedSettings(
        template=str(recorded["template"]) if recorded.get("template") else None,
        fallback_template=str(recorded.get("fallback_template") or defaults.fallback_template),
        cutoff_len=int(recorded.get("cutoff_len") or defaults.cutoff_len),
        train_on=str(recorded.get("train_on") or defaults.train_on),
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
