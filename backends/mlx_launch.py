"""Data-parallel MLX training under ``mlx.launch`` (several Macs, or ranks on one machine).

    mlx.launch -n 2 --backend ring -- python -m backends.mlx_launch \\
        --spec spec.json --data DATASET_DIR --out RUN_DIR

(``--hostfile hosts.json`` instead of ``-n`` for several machines; the command must
name the interpreter, as above.) Every rank loads the model and the data, builds the
same global batches, trains on its share of their rows and averages gradients with
``all_sum`` (mlx's ``average_gradients``), so the result equals a one-process run of
the same spec. Rank 0 alone writes checkpoints, metrics and the adapter, and reports
progress as log lines; ``--result`` names a JSON file for the ``TrainResult``.
On several machines, ``--out`` must be a folder all of them see (resume reads it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from backends.base import TrainEvent, TrainSpec, spec_from_dict, spec_to_dict
from mlx_rsi import atomic
from mlx_rsi.errors import MlxRsiError

log = logging.getLogger("backends.mlx_launch")


def read_spec(path: Path) -> TrainSpec:
    """A TrainSpec from a JSON object of its fields (unknown keys are an error)."""
    return spec_from_dict(json.loads(Path(path).read_text()), where=str(path))


def write_spec(spec: TrainSpec, path: Path) -> Path:
    atomic.write_text(path, json.dumps(spec_to_dict(spec), indent=2) + "\n")
    return path


def _log_event(event: TrainEvent) -> None:
    log.info(
        "%s step=%d/%d loss=%s val_loss=%s %s",
        event.kind, event.step, event.total_steps, event.loss, event.val_loss, event.message,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backends.mlx_launch", description=__doc__)
    parser.add_argument("--spec", type=Path, required=True, help="TrainSpec as JSON")
    parser.add_argument("--data", type=Path, required=True, help="folder with train/valid.jsonl")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--result", type=Path, help="write the TrainResult here (rank 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    import mlx.core as mx

    from backends import mlx_train  # imports mlx: after argparse, so --help needs none

    rank = mx.distributed.init().rank()
    try:
        result = mlx_train.train(read_spec(args.spec), args.data, args.out, _log_event)
    except MlxRsiError as e:
        log.error("rank %d: %s", rank, e.one_line())
        return e.exit_code
    if rank == 0 and args.result is not None:
        record = asdict(result)
        record["adapter_dir"] = str(result.adapter_dir)
        atomic.write_text(args.result, json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
