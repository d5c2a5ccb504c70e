"""A workspace set up for one quick real `train` cycle on a tiny model (test support).

The settings promote a tiny model: few steps, a high learning rate, and evaluation
that does not block on the few cases such a workspace has.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "sessions"


def cycle_config(model: Path, *, backend: str = "peft", max_steps: int = 12) -> str:
    return f"""
model:
  base: {model}
train:
  backend: {backend}
  max_steps: {max_steps}
  per_device_train_batch_size: 4
  gradient_accumulation_steps: 1
  learning_rate: 3.0e-3
  lora_dropout: 0.0
  save_steps: {max(1, max_steps // 2)}
  logging_steps: 2
  cutoff_len: 256
eval:
  max_new_tokens: 4
  block_on_insufficient: false  # a tiny model has too few cases to prove anything
"""


def cycle_workspace(cli: Any, model: Path, **settings: Any) -> Path:
    """``init`` the CLI's workspace, copy the example sessions in, write the config."""
    assert cli("init", "--no-standard-sources").exit_code == 0
    ws = Path(cli.workspace)
    shutil.copytree(EXAMPLES, ws / "sessions", dirs_exist_ok=True)
    (ws / "mlx-rsi.yaml").write_text(cycle_config(model, **settings))
    return ws
