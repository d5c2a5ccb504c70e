"""Test support: kill this process at a named point, to prove crashes are survivable.

``MLX_RSI_TEST_KILL_AT=<stage>:<when>`` makes the process SIGKILL itself (as
``kill -9`` would, no clean-up runs) when it reaches that point; unset (always,
outside tests) :func:`crash_point` does nothing. The crash harness
(``tests/test_crash_cycle.py``) uses it to stop ``mlx-rsi train`` at each stage
boundary and mid-stage deterministically instead of racing a timer. Points:

- ``<stage>:start``  the stage's events row says running, nothing done yet
- ``<stage>:end``    the stage's work is done, its completion not yet recorded
- ``<stage>:done``   the completion is recorded, the next stage not started
- ``train:step``     after the first optimizer step (no checkpoint yet)
- ``train:save``     after the first checkpoint is saved
- ``train:trained``  the backend returned the adapter, the run not yet marked done
- ``fuse:staged``    the fused model is written to its temporary folder, not renamed

This is the only place the variable is read.
"""

from __future__ import annotations

import os
import signal

ENV = "MLX_RSI_TEST_KILL_AT"


def crash_point(stage: str, when: str) -> None:
    """SIGKILL this process if ``MLX_RSI_TEST_KILL_AT`` names ``stage:when``."""
    if os.environ.get(ENV) == f"{stage}:{when}":
        os.kill(os.getpid(), signal.SIGKILL)
