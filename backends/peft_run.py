"""Entry point for launchers: ``torchrun --nproc_per_node 2 -m backends.peft_run RUN.json``.

``RUN.json`` holds ``{"spec": {TrainSpec fields}, "dataset_dir": ..., "out_dir": ...}``
(see ``write_run_file``). Every rank runs the same training code; rank 0 writes the
run folder and logs progress. On CPUs launch with torchrun (accelerate's multi-CPU
launch goes through MPI and started one process here: FACTS.md); on GPUs
``accelerate launch --multi_gpu -m backends.peft_run RUN.json`` works the same way.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path

from backends.base import TrainEvent, TrainSpec, spec_from_dict, spec_to_dict
from mlx_rsi import atomic
from mlx_rsi.errors import MlxRsiError

log = logging.getLogger("backends.peft_run")


def write_run_file(path: Path, spec: TrainSpec, dataset_dir: Path, out_dir: Path) -> Path:
    """The file a launcher passes to ``python -m backends.peft_run``."""
    record = {
        "spec": spec_to_dict(spec),
        "dataset_dir": str(dataset_dir),
        "out_dir": str(out_dir),
    }
    atomic.write_text(Path(path), json.dumps(record, indent=2) + "\n")
    return Path(path)


def _log_event(event: TrainEvent) -> None:
    fields = {k: v for k, v in dataclasses.asdict(event).items() if v not in (None, "", {}, 0)}
    log.info("%s", json.dumps(fields, default=str))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        logging.basicConfig(level=logging.INFO)
        log.error("usage: python -m backends.peft_run RUN.json")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from backends import peft_train  # imports torch: only once the arguments are right

    try:
        record = json.loads(Path(args[0]).read_text())
        spec = spec_from_dict(record["spec"])
        result = peft_train.train(
            spec, Path(record["dataset_dir"]), Path(record["out_dir"]), _log_event
        )
    except MlxRsiError as e:
        log.error("error: %s", e.one_line())
        return e.exit_code
    log.info("adapter: %s (%d steps)", result.adapter_dir, result.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
