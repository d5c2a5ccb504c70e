"""The run-folder pieces both backends share: checkpoints, trainer state, resume check, metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from backends import run_files
from backends.base import TrainEvent, TrainSpec, spec_to_dict
from mlx_rsi.errors import BackendError


def _checkpoint(out_dir: Path, name: str, *, complete: bool = True) -> Path:
    folder = out_dir / "checkpoints" / name
    folder.mkdir(parents=True)
    if complete:
        (folder / run_files.STATE_FILE).write_text(run_files.TrainerState().to_json())
    return folder


def test_checkpoints_are_listed_by_step_and_incomplete_ones_are_ignored(tmp_path: Path) -> None:
    for name in ("step-2", "step-10", "step-1", "best"):
        _checkpoint(tmp_path, name)
    _checkpoint(tmp_path, "step-3", complete=False)  # no trainer_state.json: not complete
    leftover = _checkpoint(tmp_path, ".step-4.x1y2.tmp")  # a write killed midway
    assert run_files.list_checkpoints(tmp_path) == [
        (1, tmp_path / "checkpoints" / "step-1"),
        (2, tmp_path / "checkpoints" / "step-2"),
        (10, tmp_path / "checkpoints" / "step-10"),
    ]
    assert run_files.latest_checkpoint(tmp_path) == run_files.checkpoint_dir(tmp_path, 10)
    run_files.prune_incomplete(tmp_path)
    assert not leftover.exists()
    assert (tmp_path / "checkpoints" / "step-3").is_dir()  # only temp folders are removed


def test_resume_without_a_checkpoint_says_so(tmp_path: Path) -> None:
    assert run_files.list_checkpoints(tmp_path / "missing") == []
    _checkpoint(tmp_path, "step-5", complete=False)
    with pytest.raises(BackendError, match="nothing to resume: no checkpoint under") as info:
        run_files.latest_checkpoint(tmp_path)
    assert "without --resume" in str(info.value.hint)


@dataclass
class _RankedState(run_files.TrainerState):
    world_size: int = 1


def test_trainer_state_round_trips_and_a_bad_one_names_its_folder(tmp_path: Path) -> None:
    state = _RankedState(step=7, trained_tokens=90, best_val_loss=1.5, best_step=6,
                         data_digest="ab", spec={"rank": 8}, world_size=2)  # fmt: skip
    folder = tmp_path / "step-7"
    folder.mkdir()
    (folder / run_files.STATE_FILE).write_text(state.to_json())
    assert run_files.read_state(folder, _RankedState) == state
    # A state written by a backend with more fields is not silently half-read.
    with pytest.raises(BackendError, match=r"checkpoint .*step-7 is unreadable"):
        run_files.read_state(folder, run_files.TrainerState)
    (folder / run_files.STATE_FILE).write_text("{not json")
    with pytest.raises(BackendError, match="is unreadable") as info:
        run_files.read_state(folder, _RankedState)
    assert "previous one" in str(info.value.hint)


def test_evaluations_track_the_best_step_and_the_evals_since() -> None:
    state = run_files.TrainerState(step=1)
    assert state.record_eval(2.0)
    state.step = 2
    assert not state.record_eval(2.0)  # equal is no improvement
    state.step = 3
    assert not state.record_eval(2.5)
    assert (state.best_val_loss, state.best_step, state.evals_without_improvement) == (2.0, 1, 2)
    state.step = 4
    assert state.record_eval(1.0)
    assert (state.best_val_loss, state.best_step, state.evals_without_improvement) == (1.0, 4, 0)
    state.last_loss, state.trained_tokens = 0.5, 40
    result = state.to_result(Path("adapter"), 3.0, stopped_early=True)
    assert (result.steps, result.final_loss, result.best_val_loss) == (4, 0.5, 1.0)
    assert (result.trained_tokens, result.seconds, result.stopped_early) == (40, 3.0, True)


def test_resume_settings_check_names_what_changed(tmp_path: Path) -> None:
    spec = TrainSpec(model_dir=tmp_path / "model")
    before = spec_to_dict(spec)
    assert run_files.changed_settings(before, spec_to_dict(spec)) == []
    longer = replace(spec, max_steps=99, epochs=3.0, save_steps=5, resume=True)
    assert run_files.changed_settings(before, spec_to_dict(longer)) == []
    other = replace(spec, rank=4, target_modules=("q_proj",), model_dir=tmp_path / "b")
    assert run_files.changed_settings(before, spec_to_dict(other)) == [
        "model_dir", "rank", "target_modules",
    ]  # fmt: skip
    # A state without a spec record (never written by a backend) differs in every set field.
    set_fields = [k for k in run_files.RESUME_FIELDS if before[k] is not None]
    assert run_files.changed_settings(None, before) == set_fields
    assert "rank" in set_fields and "num_layers" not in set_fields


def _records(out_dir: Path) -> list[dict[str, object]]:
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_run_log_writes_metrics_tensorboard_and_events(tmp_path: Path) -> None:
    events: list[TrainEvent] = []
    log = run_files.RunLog(tmp_path, events.append, main=True, total_steps=4)
    state = run_files.TrainerState(step=2, trained_tokens=30)
    log.train_window(state, loss=1.25, lr=1e-4, tokens_per_second=50.0, elapsed=0.5)
    log.evaluated(state, 1.5, elapsed=0.75)
    log.emit("save", state.step, message="saved")
    log.close()
    assert state.last_loss == 1.25
    assert _records(tmp_path) == [
        {"kind": "train", "step": 2, "loss": 1.25, "lr": 1e-4, "tokens_per_second": 50.0,
         "trained_tokens": 30, "elapsed": 0.5},
        {"kind": "eval", "step": 2, "val_loss": 1.5, "elapsed": 0.75},
    ]  # fmt: skip
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert [(e.kind, e.step, e.total_steps) for e in events] == [
        ("step", 2, 4), ("eval", 2, 4), ("save", 2, 4),
    ]  # fmt: skip
    step, evaluation = events[0], events[1]
    assert (step.loss, step.learning_rate, step.tokens_per_second) == (1.25, 1e-4, 50.0)
    assert (step.trained_tokens, evaluation.val_loss, evaluation.trained_tokens) == (30, 1.5, 30)
    assert events[2].message == "saved"


def test_other_ranks_write_and_report_nothing(tmp_path: Path) -> None:
    events: list[TrainEvent] = []
    log = run_files.RunLog(tmp_path, events.append, main=False, total_steps=4)
    state = run_files.TrainerState(step=1)
    log.train_window(state, loss=1.0, lr=1e-4, tokens_per_second=1.0, elapsed=0.1)
    log.evaluated(state, 1.0, elapsed=0.2)
    log.close()
    assert events == [] and list(tmp_path.iterdir()) == []
    assert state.last_loss == 1.0  # the state still advances on every rank


def test_a_resumed_log_drops_the_records_it_will_repeat(tmp_path: Path) -> None:
    first = run_files.RunLog(tmp_path, lambda e: None, main=True, total_steps=6)
    for step in range(1, 6):
        state = run_files.TrainerState(step=step)
        first.train_window(state, loss=1.0, lr=1e-4, tokens_per_second=1.0, elapsed=step)
        if step % 2 == 0:
            first.evaluated(state, 2.0, elapsed=step)
    first.close()
    again = run_files.RunLog(tmp_path, lambda e: None, main=True, total_steps=6, resumed_at=3)
    again.train_window(run_files.TrainerState(step=4), loss=0.5, lr=1e-4,
                       tokens_per_second=1.0, elapsed=9.0)  # fmt: skip
    again.close()
    kept = [(r["kind"], r["step"]) for r in _records(tmp_path)]
    assert kept == [("train", 1), ("train", 2), ("eval", 2), ("train", 3), ("train", 4)]
    assert _records(tmp_path)[-1]["loss"] == 0.5
    # Without resumed_at (a fresh writer) the old records stay.
    plain = run_files.MetricsSink(tmp_path, True)
    plain.close()
    assert len(_records(tmp_path)) == 5


def test_resume_point_takes_the_latest_or_refuses_a_used_folder(tmp_path: Path) -> None:
    assert run_files.resume_point(tmp_path, resume=False) is None  # a fresh folder
    _checkpoint(tmp_path, "step-3")
    leftover = _checkpoint(tmp_path, ".step-4.x1y2.tmp")
    assert run_files.resume_point(tmp_path, resume=True) == tmp_path / "checkpoints" / "step-3"
    assert not leftover.exists()  # a write killed midway is cleared first
    with pytest.raises(BackendError, match="already holds checkpoints") as info:
        run_files.resume_point(tmp_path, resume=False)
    assert "--resume" in str(info.value.hint)


def test_a_resume_needs_the_same_settings_and_data(tmp_path: Path) -> None:
    spec = spec_to_dict(TrainSpec(model_dir=tmp_path))
    saved = run_files.TrainerState(step=4, data_digest="abc", spec=spec)
    run_files.check_resumable(saved, run_files.TrainerState(data_digest="abc", spec=spec), tmp_path)
    other = {**spec, "learning_rate": 1.0, "seed": 7}
    with pytest.raises(BackendError, match="learning_rate, seed differ from the interrupted run"):
        run_files.check_resumable(
            saved, run_files.TrainerState(data_digest="abc", spec=other), tmp_path
        )
    with pytest.raises(BackendError, match=r"train\.jsonl changed"):
        run_files.check_resumable(
            saved, run_files.TrainerState(data_digest="xyz", spec=spec), tmp_path
        )


def test_importing_run_files_imports_no_framework() -> None:
    code = (
        "import sys, backends.run_files\n"
        "heavy = {'torch', 'mlx', 'mlx_lm', 'transformers', 'peft', 'tensorboardX'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
