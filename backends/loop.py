"""The one training loop both backends run: schedule, cadence, early stopping, Ctrl-C, metrics.

A backend hands the loop a ``Framework``: its optimizer step, evaluation, checkpoint and
adapter writers, nothing else. Everything about *when* (the learning rate of each step,
when to log, evaluate, save and stop, what Ctrl-C does, what the metrics say) lives here,
so one ``TrainSpec`` behaves the same on MLX and PEFT.

Schedule: optimizer step ``k`` (0-based) trains at ``learning_rate(spec, total, k)``. With
``W = ceil(total * warmup_ratio)`` warmup steps the rate rises linearly,
``peak * (k + 1) / (W + 1)``, so no step is spent at 0 and step ``W`` is the first at the
peak; then it decays (cosine or linear) over the remaining steps towards 0, reached one
step after the last, or stays constant. The rate logged for a step is the one it trained at.

Ctrl-C: with one process, the first SIGINT only raises a flag checked between steps; the
loop then saves a checkpoint of the last finished step and raises ``InterruptedRun``. A
second SIGINT interrupts at once: between steps the same checkpoint is written; inside a
step (weights may be half-updated) nothing is written and ``--resume`` continues from the
last checkpoint. With several ranks no flag is installed (the ranks could not agree on a
step boundary without a collective each step), so there Ctrl-C acts as the second press.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from backends import run_files
from backends.base import EventKind, OnEvent, TrainResult, TrainSpec
from mlx_rsi.errors import InterruptedRun

ADAPTER_DIR = "adapter"
BEST_DIR = "best"  # checkpoints/best/: the adapter of the best evaluation (keep-best)


def warmup_steps(spec: TrainSpec, total_steps: int) -> int:
    return math.ceil(total_steps * spec.warmup_ratio)


def learning_rate(spec: TrainSpec, total_steps: int, step: int) -> float:
    """The rate optimizer step ``step`` (0-based) trains at; see the module docstring."""
    peak = spec.learning_rate
    warmup = warmup_steps(spec, total_steps)
    if step < warmup:
        return peak * (step + 1) / (warmup + 1)
    if spec.schedule == "constant":
        return peak
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    if spec.schedule == "linear":
        return peak * (1.0 - progress)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


@contextmanager
def sigint_flag(enabled: bool) -> Iterator[Callable[[], bool]]:
    """First Ctrl-C raises a flag (checked between steps); a second one interrupts at once.

    Installed only when ``enabled``, in the main thread, and when SIGINT is not ignored
    (a process started in the background keeps ignoring it); the previous handler is
    restored afterwards.
    """
    flag = threading.Event()
    installable = (
        enabled
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    )
    if not installable:
        yield flag.is_set
        return

    def handler(signum: int, frame: object) -> None:
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag.is_set
    finally:
        # None: a handler set outside Python, which cannot be put back; the default can.
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


class Framework(Protocol):
    """What a backend supplies to the loop: one prepared run of its framework."""

    world_size: int
    is_main: bool
    examples: int  # encoded training examples
    target_tokens: int  # trained tokens of one pass over them (estimates scale by it)
    tokens: int  # all tokens of one pass, prompts included
    skipped: int  # training examples dropped (nothing left to train after the cutoff)
    trainable_parameters: int
    has_valid: bool

    def train_step(self, step: int, lr: float) -> int:
        """Run optimizer step ``step`` (0-based) at ``lr``; its trained tokens, all ranks."""
        ...

    def take_loss_sum(self) -> float:
        """The summed token loss of the steps since the last call, all ranks (a collective)."""
        ...

    def evaluate(self) -> float:
        """Mean loss per trained token of the valid split (every rank calls it)."""
        ...

    def save_checkpoint(self, state: Any) -> Path:
        """Write ``checkpoints/step-<state.step>/`` (main rank only)."""
        ...

    def save_best(self, folder: Path, state: Any) -> None:
        """Write the current adapter to ``folder`` (main rank only)."""
        ...

    def write_adapter(self, adapter_dir: Path, best: Path | None) -> None:
        """The final adapter: the current weights, or those saved in ``best`` (main rank)."""
        ...

    def barrier(self) -> None:
        """Wait for every rank (a no-op with one process)."""
        ...


class TrainLoop:
    """Runs ``total_steps`` optimizer steps of a prepared ``Framework`` from ``state``."""

    def __init__(
        self,
        spec: TrainSpec,
        out_dir: Path,
        framework: Framework,
        state: run_files.TrainerState,
        total_steps: int,
        on_event: OnEvent,
        resumed_from: Path | None = None,
    ) -> None:
        self.spec, self.out_dir, self.fw, self.state = spec, Path(out_dir), framework, state
        self.total_steps = total_steps
        self.resumed_from = resumed_from
        self.log = run_files.RunLog(
            self.out_dir,
            on_event,
            main=framework.is_main,
            total_steps=total_steps,
            # Steps after the checkpoint are trained again: their old records go.
            resumed_at=state.step if resumed_from is not None else None,
        )
        self.saved_step = state.step if resumed_from is not None else -1
        self.started = time.perf_counter() - state.elapsed
        self.window_tokens = 0
        self.window_start = time.perf_counter()
        self.lr = learning_rate(spec, total_steps, state.step)
        self.in_step = False
        self.stopped_early = False

    @property
    def best_dir(self) -> Path:
        return run_files.checkpoints_root(self.out_dir) / BEST_DIR

    def emit(self, kind: EventKind, **fields: Any) -> None:
        self.log.emit(kind, self.state.step, **fields)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def fit(self) -> TrainResult:
        """Train to the end (or an early stop); Ctrl-C ends in ``InterruptedRun``."""
        fw = self.fw
        self.emit(
            "start",
            message=(
                f"training {fw.trainable_parameters} adapter parameters"
                f" on {fw.world_size} process(es)"
            ),
            extra={
                "world_size": fw.world_size,
                "examples": fw.examples,
                "target_tokens": fw.target_tokens,
                "tokens": fw.tokens,
                "skipped": fw.skipped,
                "resumed_from": str(self.resumed_from) if self.resumed_from else None,
            },
        )
        try:
            with sigint_flag(fw.world_size == 1) as interrupted:
                self._loop(interrupted)
        except KeyboardInterrupt as e:
            raise self._interrupted() from e
        finally:
            self.log.close()
        return self._finish()

    def _loop(self, interrupted: Callable[[], bool]) -> None:
        spec, state = self.spec, self.state
        while state.step < self.total_steps:
            self.lr = learning_rate(spec, self.total_steps, state.step)
            self.in_step = True
            tokens = self.fw.train_step(state.step, self.lr)
            state.step += 1
            self.in_step = False
            state.trained_tokens += tokens
            self.window_tokens += tokens
            last = state.step == self.total_steps
            if state.step % spec.logging_steps == 0 or last:
                self._log()
            stop = self._maybe_evaluate(last)
            if state.step % spec.save_steps == 0 or last or stop:
                self.checkpoint()
            if stop:
                self.stopped_early = True
                self.emit("stop", val_loss=state.best_val_loss, message=stop_message(state))
                return
            if interrupted():
                raise KeyboardInterrupt

    def _log(self) -> None:
        seconds = max(time.perf_counter() - self.window_start, 1e-9)
        loss = self.fw.take_loss_sum() / max(self.window_tokens, 1)
        self.log.train_window(
            self.state,
            loss=loss,
            lr=self.lr,
            tokens_per_second=self.window_tokens / seconds,
            elapsed=self.elapsed(),
        )
        self.window_tokens = 0
        self.window_start = time.perf_counter()

    def _maybe_evaluate(self, last: bool) -> bool:
        """Evaluate when due; True when early stopping says stop."""
        spec, state = self.spec, self.state
        every = spec.eval_steps or spec.save_steps
        if not self.fw.has_valid or not (state.step % every == 0 or last):
            return False
        began = time.perf_counter()
        val_loss = self.fw.evaluate()
        patience = spec.early_stopping_patience
        if state.record_eval(val_loss) and patience and self.fw.is_main:
            self.fw.save_best(self.best_dir, state)
        self.log.evaluated(state, val_loss, self.elapsed())
        self.window_start += time.perf_counter() - began  # not training time
        return bool(patience) and state.evals_without_improvement >= (patience or 0)

    def checkpoint(self) -> None:
        """Save ``checkpoints/step-<step>/`` unless this step already has one."""
        if self.saved_step == self.state.step:
            return
        began = time.perf_counter()
        self.state.elapsed = self.elapsed()
        if self.fw.is_main:
            path = self.fw.save_checkpoint(self.state)
            self.emit("save", message=str(path))
        self.saved_step = self.state.step
        self.window_start += time.perf_counter() - began

    def _interrupted(self) -> InterruptedRun:
        step = self.state.step
        if self.in_step:
            last = run_files.list_checkpoints(self.out_dir)
            since = f"step {last[-1][0]}" if last else "the start"
            return InterruptedRun(
                f"training interrupted during step {step + 1}; no checkpoint written",
                hint=f"rerun with --resume (it continues from {since})",
            )
        self.checkpoint()
        return InterruptedRun(
            f"training interrupted at step {step}; checkpoint saved", hint="rerun with --resume"
        )

    def _finish(self) -> TrainResult:
        state = self.state
        adapter_dir = self.out_dir / ADAPTER_DIR
        keep_best = bool(self.spec.early_stopping_patience) and state.best_step is not None
        best = self.best_dir if keep_best and self.best_dir.is_dir() else None
        if self.fw.is_main:
            self.fw.write_adapter(adapter_dir, best)
        self.fw.barrier()
        self.emit(
            "end",
            loss=state.last_loss,
            val_loss=state.best_val_loss,
            trained_tokens=state.trained_tokens,
            message=str(adapter_dir),
        )
        return state.to_result(adapter_dir, self.elapsed(), self.stopped_early)


def stop_message(state: run_files.TrainerState) -> str:
    return (
        f"early stop: no improvement in {state.evals_without_improvement} evaluation(s); "
        f"best val_loss {state.best_val_loss:.4f} at step {state.best_step}"
    )
