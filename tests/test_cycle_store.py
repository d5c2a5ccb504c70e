"""The cycle's bookkeeping without a model: stages recorded and resumed, promotion in one
transaction, leftovers of killed writes, the legacy migration, status while a cycle runs."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from backends.base import TrainEvent
from mlx_rsi import atomic, cycle, registry, store, training
from mlx_rsi.config import Config
from mlx_rsi.lock import WorkspaceLock
from mlx_rsi.status import workspace_status
from mlx_rsi.workspace import MIGRATIONS, Workspace, migrate, transaction


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace(tmp_path / "ws")
    workspace.create()
    return workspace


@pytest.fixture
def conn(ws: Workspace):
    connection = ws.store()
    yield connection
    connection.close()


def add_version(conn: sqlite3.Connection, name: str, status: str) -> None:
    registry.record_version(conn, registry.Version(name, status))


def current_rows(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM versions WHERE status = 'current'")]


# --------------------------------------------------------------------------- promotion


def test_promotion_moves_pointer_and_statuses_together(conn):
    add_version(conn, "v1.1", "candidate")
    assert registry.promote(conn, "v1.1") is None
    add_version(conn, "v1.2", "candidate")
    assert registry.promote(conn, "v1.2") == "v1.1"
    assert registry.promote(conn, "v1.2") is None  # again: nothing changes
    assert current_rows(conn) == ["v1.2"] and registry.current_version(conn) == "v1.2"
    assert registry.get_version(conn, "v1.1").status == "retired"


def test_promotion_repairs_two_current_rows(conn):
    """Whatever an older mlx-rsi left, after a promotion exactly one version is current."""
    add_version(conn, "v1.1", "current")
    add_version(conn, "v1.2", "current")
    add_version(conn, "v1.3", "candidate")
    registry.promote(conn, "v1.3")
    assert current_rows(conn) == ["v1.3"]


def test_promoting_an_unknown_version_changes_nothing(conn):
    add_version(conn, "v1.1", "candidate")
    registry.promote(conn, "v1.1")
    with pytest.raises(Exception, match=r"no version v9\.9"):
        registry.promote(conn, "v9.9")
    assert registry.current_version(conn) == "v1.1"


def test_stage_completion_is_all_or_nothing(conn):
    """A stage's store changes, its completion record and its event commit together."""
    add_version(conn, "v1.1", "candidate")
    record = store.create_cycle(conn, "c1")
    event = store.start_event(conn, record.id, "promote")

    def commit(c: sqlite3.Connection) -> None:
        registry.make_current(c, "v1.1")
        raise sqlite3.OperationalError("database or disk is full")

    with pytest.raises(sqlite3.OperationalError):
        store.complete_stage(conn, "c1", "promote", result={}, event_id=event, summary="x",
                             commit=commit)  # fmt: skip
    assert registry.current_version(conn) is None and current_rows(conn) == []
    assert store.unfinished_cycles(conn)[0].completed == {}
    assert conn.execute("SELECT status FROM events").fetchone()[0] == "running"


# --------------------------------------------------------------------------- the runner


class ToyStages:
    """Stages that count their calls; ``fail`` makes one raise a disk-full error once."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def stage(self, name: str, **options: Any) -> cycle.Stage:
        def run(ctx: cycle.CycleContext) -> cycle.StageOutcome:
            self.calls.append(name)
            if name == "named":
                store.claim_dataset(ctx.conn, ctx.cycle.id, "v1.1", "v1.1", built=False)
                ctx.cycle.version = "v1.1"
            if name == self.fail:
                self.fail = None
                raise OSError(errno.ENOSPC, "No space left on device")
            return cycle.StageOutcome(f"{name}: ok", {"stage": name})

        return cycle.Stage(name, run, **options)


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch):
    """Run the real runner over toy stages (no backend, no base model needed)."""
    monkeypatch.setattr(cycle, "get_backend", lambda name: None)
    monkeypatch.setattr(cycle, "check_base_model", lambda name, root: None)

    def install(stages: ToyStages) -> ToyStages:
        monkeypatch.setattr(
            cycle,
            "STAGES",
            (
                stages.stage("prepare", recorded=False),
                stages.stage("named"),
                stages.stage("heavy"),
                stages.stage("last"),
            ),
        )
        return stages

    return install


def run(ws: Workspace, lines: list[str] | None = None, **kwargs: Any) -> cycle.CycleResult:
    report = lines.append if lines is not None else lambda line: None
    return cycle.run_cycle(ws, Config(), report=report, on_train_event=lambda e: None, **kwargs)


def test_failed_cycle_resumes_after_its_last_completed_stage(ws, conn, toy):
    stages = toy(ToyStages(fail="heavy"))
    with pytest.raises(OSError, match="No space left"):
        run(ws)
    assert stages.calls == ["prepare", "named", "heavy"]
    events = conn.execute("SELECT stage, status FROM events ORDER BY id").fetchall()
    assert [tuple(e) for e in events] == [("prepare", "done"), ("named", "done"),
                                          ("heavy", "failed")]  # fmt: skip
    lines: list[str] = []
    result = run(ws, lines)
    assert stages.calls[3:] == ["heavy", "last"]  # prepare and named are not redone
    assert result.version == "v1.1" and result.resumed
    assert any(line.startswith("resume: unfinished cycle v1.1 (done: named)") for line in lines)
    assert store.unfinished_cycles(conn) == []
    assert store.latest_cycle(conn).status == "done"
    run(ws)  # the next cycle is a new one, from the start
    assert stages.calls[5:] == ["prepare", "named", "heavy", "last"]


def test_unrecorded_stages_are_redone_until_a_recorded_one_completes(ws, toy):
    stages = toy(ToyStages(fail="named"))
    with pytest.raises(OSError):
        run(ws)
    run(ws)
    assert stages.calls == ["prepare", "named", "prepare", "named", "heavy", "last"]


def test_a_row_left_running_by_a_dead_process_is_closed(ws, conn, toy):
    toy(ToyStages())
    store.start_event(conn, "old", "train")
    run(ws)
    assert conn.execute("SELECT status FROM events WHERE cycle_id = 'old'").fetchone()[0] == (
        "interrupted"
    )


def test_fresh_abandons_the_unfinished_cycle(ws, conn, toy):
    stages = toy(ToyStages(fail="heavy"))
    with pytest.raises(OSError):
        run(ws)
    registry.record_version(conn, registry.Version("v1.1", "training", run_id="r1"))
    store.record_run(conn, "r1", backend="peft", dataset="v1.1", spec={}, out_dir=ws.runs_dir)
    lines: list[str] = []
    run(ws, lines, fresh=True)
    assert "resume: abandoned unfinished cycle v1.1" in lines
    assert stages.calls[3:] == ["prepare", "named", "heavy", "last"]
    assert registry.get_version(conn, "v1.1").status == "abandoned"
    assert store.get_run(conn, "r1").status == "running"  # not the cycle's run: untouched


# --------------------------------------------------------------------------- leftovers


def test_staging_names_are_those_atomic_writes_use(tmp_path, monkeypatch):
    final = tmp_path / "models" / "v1.1" / "hf"
    with atomic.staged_dir(final) as staging:
        assert cycle.staging_name_pattern(final).match(staging.name)
    seen: list[str] = []

    def refuse(src: str, dst: str) -> None:
        seen.append(Path(src).name)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(OSError):
        atomic.write_text(tmp_path / "v1.1.json", "{}")
    assert cycle.staging_name_pattern(tmp_path / "v1.1.json").match(seen[0])


def test_leftovers_of_this_cycle_are_removed_and_nothing_else(ws, conn):
    record = store.create_cycle(conn, "c1")
    record.version, record.dataset, record.dataset_built, record.run_id = "v1.1", "v1.1", True, "r1"
    ctx = cycle.CycleContext(ws, conn, Config(), lambda line: None, lambda e: None, record)
    ours = [
        ws.datasets_dir / ".v1.1.k2j3h4g5.tmp",
        ws.models_dir / "v1.1" / ".hf.abc_1234.tmp",
        ws.models_dir / "v1.1" / ".hf.old",
        ws.reports_dir / ".v1.1.json.x8y7z6w5.tmp",
        ws.runs_dir / "r1" / ".adapter.q1w2e3r4.tmp",
    ]
    theirs = [
        ws.datasets_dir / ".v1.10.k2j3h4g5.tmp",  # another version's
        ws.datasets_dir / "v1.1.tmp",
        ws.models_dir / "v1.1" / ".hf-notes.tmp",
        ws.models_dir / "v1.2" / ".hf.abc_1234.tmp",
    ]
    for path in ours + theirs:
        path.mkdir(parents=True)
        (path / "file").write_text("x")
    removed = cycle.remove_leftovers(ctx)
    assert sorted(removed) == sorted(ours)
    assert all(p.exists() for p in theirs) and not any(p.exists() for p in ours)
    empty = ws.models_dir / "v1.3"
    empty.mkdir()
    record.version = "v1.3"
    assert cycle.remove_leftovers(ctx) == [empty]  # a fuse that never finished


# --------------------------------------------------------------------------- runs


def test_the_run_row_follows_training_steps(conn, monkeypatch, tmp_path):
    store.record_run(conn, "r1", backend="peft", dataset="v1.1", spec={}, out_dir=tmp_path)
    seen: list[int] = []
    handle = training._recording(conn, "r1", lambda e: seen.append(e.step))
    handle(TrainEvent("step", step=1))
    assert store.get_run(conn, "r1").step == 0  # plain steps: not every one is written
    handle(TrainEvent("save", step=2))
    assert store.get_run(conn, "r1").step == 2
    monkeypatch.setattr(training, "STEP_RECORD_SECONDS", 0.0)
    handle(TrainEvent("step", step=3))
    assert store.get_run(conn, "r1").step == 3 and seen == [1, 2, 3]


def test_choose_run_resumes_reuses_or_replaces(conn, tmp_path):
    assert not training.choose_run(conn, None, "v1.1").resume
    out = tmp_path / "r1"
    store.record_run(conn, "r1", backend="peft", dataset="v1.1", spec={}, out_dir=out)
    (out / "checkpoints" / ".step-2.abc.tmp").mkdir(parents=True)
    replaced = training.choose_run(conn, "r1", "v1.1")  # no complete checkpoint
    assert replaced.run_id != "r1" and not replaced.resume
    assert store.get_run(conn, "r1").status == "abandoned"
    assert not (out / "checkpoints" / ".step-2.abc.tmp").exists()
    (out / "checkpoints" / "step-2").mkdir()
    assert training.choose_run(conn, "r1", "v1.1") == training.RunChoice(
        "r1", resume=True, note="resuming run r1"
    )
    (out / "adapter").mkdir()
    store.finish_run(conn, "r1", 4, out / "adapter", {"steps": 4})
    finished = training.choose_run(conn, "r1", "v1.1")
    assert finished.finished is not None and finished.run_id == "r1"


# --------------------------------------------------------------------------- migration and status


def test_a_version_left_training_by_an_older_release_becomes_an_unfinished_cycle(tmp_path):
    conn = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    conn.row_factory = sqlite3.Row
    older = MIGRATIONS[:2]
    for _name, sql in older:
        conn.executescript(sql)
    conn.executescript(
        """
        CREATE TABLE schema_migrations (id TEXT PRIMARY KEY, applied_at TEXT);
        INSERT INTO schema_migrations VALUES ('0001_initial', '');
        INSERT INTO schema_migrations VALUES ('0002_ingest_message_roles', '');
        INSERT INTO datasets (name, path, manifest) VALUES ('v1.1', '/ws/datasets/v1.1', '{}');
        INSERT INTO versions (name, dataset, run_id, status)
            VALUES ('v1.1', 'v1.1', 'r1', 'training');
        INSERT INTO versions (name, dataset, run_id, status)  -- its dataset is gone: not resumable
            VALUES ('v1.0x', 'gone', 'r0', 'training');
        """
    )
    migrate(conn)
    [unfinished] = store.unfinished_cycles(conn)
    assert (unfinished.version, unfinished.run_id) == ("v1.1", "r1")
    assert unfinished.completed == {"dataset": {"dataset": "v1.1", "path": "/ws/datasets/v1.1"}}
    conn.close()


def test_status_tells_a_running_cycle_from_an_interrupted_one(ws, conn):
    record = store.create_cycle(conn, "c1")
    store.claim_dataset(conn, record.id, "v1.1", "v1.1", built=True)
    store.record_run(conn, "r1", backend="peft", dataset="v1.1", spec={}, out_dir=ws.runs_dir)
    store.start_event(conn, record.id, "train")
    with WorkspaceLock(ws.root, "mlx-rsi train"):
        live = workspace_status(ws)
    assert live.running and "mlx-rsi train" in live.running
    assert live.interrupted_runs == [] and live.unfinished_cycle is None
    assert live.recent_events[-1]["status"] == "running"
    dead = workspace_status(ws)
    assert dead.running is None and dead.interrupted_runs == ["r1"]
    assert dead.unfinished_cycle and dead.unfinished_cycle["version"] == "v1.1"
    assert dead.recent_events[-1]["status"] == "interrupted"
    with transaction(conn):
        conn.execute("UPDATE runs SET status = 'done'")
    store.finish_cycle(conn, record.id)
    assert workspace_status(ws).interrupted_runs == []  # a finished run is not listed


def test_a_stage_error_is_reported_even_when_its_failure_cannot_be_recorded(ws, toy, monkeypatch):
    toy(ToyStages(fail="heavy"))

    def full(*args: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "end_event", full)
    with pytest.raises(OSError, match="No space left"):  # not the store's error
        run(ws)
