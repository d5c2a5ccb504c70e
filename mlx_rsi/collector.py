"""The seed guide's WorkSessionCollector, made safe for real use.

Same interface as the guide's step 3 class (``WorkSessionCollector(name)`` and
``record(user_input, assistant_output, metadata=None)``), but each call appends
one JSON line and fsyncs it instead of rewriting the whole file, so a crash never
loses earlier interactions and ``mlx-rsi ingest`` can read the file incrementally.
A session name is a plain name, never a path (``mlx_rsi.names``).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from mlx_rsi.names import check_name

INTERACTIONS_FILE = "interactions.jsonl"


class WorkSessionCollector:
    def __init__(self, session_name: str = "session_1", root: str | Path = "sessions") -> None:
        self.session_name = validate_session_name(session_name)
        self.root = Path(root)
        self.session_path = self.root / self.session_name
        self.session_path.mkdir(parents=True, exist_ok=True)
        self.output_file = self.session_path / INTERACTIONS_FILE
        self.interactions: list[dict[str, Any]] = []  # this process's records (seed compat)

    def record(
        self, user_input: str, assistant_output: str, metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Append one interaction as a JSON line, flushed and fsynced before returning."""
        interaction = {
            "timestamp": datetime.now().astimezone().isoformat(),
            "user": user_input,
            "assistant": assistant_output,
            "metadata": metadata or {},
        }
        line = json.dumps(interaction, ensure_ascii=False) + "\n"
        with self.output_file.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self.interactions.append(interaction)
        return interaction

    def save(self) -> None:
        """Kept for the seed's interface: every record() is already on disk."""


def validate_session_name(name: str) -> str:
    """The session name when it is a plain name (mlx_rsi.names); else a UsageError."""
    return check_name(name, "session name")
