"""`make demo-tiny`: one full mlx-rsi cycle on a tiny model, a one-minute smoke run.

It proves the plumbing, not the learning (`make demo` does that on the real model).
Builds a tiny model locally (random weights, tokenizer trained here; nothing is
downloaded), creates ./demo-tiny-workspace, copies examples/sessions into it, runs
`mlx-rsi train` with configs/demo-tiny.yaml, and checks that the promoted model
loads in transformers.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", type=Path, default=REPO / "demo-tiny-workspace")
    parser.add_argument("--keep", action="store_true", help="keep an existing demo workspace")
    args = parser.parse_args()
    ws: Path = args.workspace.resolve()
    if ws.exists() and not args.keep:
        shutil.rmtree(ws)
    cli = [str(Path(sys.executable).with_name("mlx-rsi")), "--workspace", str(ws)]
    subprocess.run([*cli, "init", "--no-standard-sources", "--force"], check=True)
    _build_base_model(ws / "base-model")
    shutil.copytree(REPO / "examples" / "sessions", ws / "sessions", dirs_exist_ok=True)
    config = REPO / "configs" / "demo-tiny.yaml"
    done = subprocess.run([*cli, "--config", str(config), "train"])
    if done.returncode != 0:
        return done.returncode
    subprocess.run([*cli, "status"], check=True)
    return _check_and_point(ws)


def _build_base_model(target: Path) -> None:
    from mlx_rsi.tinymodel import build_tiny_model

    if not (target / "config.json").is_file():
        build_tiny_model(target, arch="llama")
        print(f"built a tiny llama base model in {target}")


def _check_and_point(ws: Path) -> int:
    fused = ws / "models" / "v1.1" / "hf"
    if not (fused / "config.json").is_file():
        print(f"v1.1 was not promoted; see {ws / 'reports' / 'v1.1.md'}")
        return 1
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(fused)
    params = sum(p.numel() for p in model.parameters())
    print(f"\nmodels/v1.1/hf loads in transformers ({params:,} parameters)")
    print(f"  fused model : {fused}")
    print(f"  eval report : {ws / 'reports' / 'v1.1.md'}")
    print(f"  dataset     : {ws / 'datasets' / 'v1.1'}")
    print(f"  run         : {next((ws / 'runs').glob('v1.1-*'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
