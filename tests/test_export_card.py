"""The model card and the Ollama Modelfile: what they say, and what they never say."""

from __future__ import annotations

import json
import shutil

import yaml

from mlx_rsi import registry
from mlx_rsi.config import load_config
from mlx_rsi.export import card as cards
from mlx_rsi.workspace import Workspace

SECRET_EXAMPLE = "please refactor the zanzibar-quux billing module"


def _workspace(cli, base, *, include_examples: bool) -> Workspace:
    assert cli("init", "--no-standard-sources").exit_code == 0
    ws = Workspace(cli.workspace)
    extra = "publish:\n  include_examples: true\n" if include_examples else ""
    ws.config_path.write_text(f"model:\n  base: {base}\n{extra}")
    shutil.copytree(base, ws.models_dir / "v1.1" / "hf")
    data = ws.datasets_dir / "v1.1"
    data.mkdir(parents=True)
    chat = {"messages": [{"role": "user", "content": SECRET_EXAMPLE}]}
    (data / "train.jsonl").write_text(json.dumps(chat) + "\n")
    manifest = {"counts": {"train": 41, "valid": 5, "test": 6}, "sessions": ["a", "b", "c"]}
    conn = ws.store()
    with conn:
        conn.execute(
            "INSERT INTO datasets (name, path, parent, manifest, created_at) VALUES (?,?,?,?,?)",
            ("v1.1", str(data), None, json.dumps(manifest), "2026-12-01T00:00:00Z"),
        )
        conn.execute(
            "INSERT INTO runs (id, backend, dataset, spec, status, out_dir) VALUES (?,?,?,?,?,?)",
            ("r1", "peft", "v1.1", json.dumps({"rank": 8, "learning_rate": 2e-4}), "done", "x"),
        )
    evaluation = {"baseline": "base", "candidate_pass_rate": 0.8, "baseline_pass_rate": 0.5}
    registry.record_version(
        conn, registry.Version("v1.1", "candidate", "v1.0", "v1.1", "r1", evaluation)
    )
    registry.promote(conn, "v1.1")
    conn.close()
    return ws


def test_card_has_counts_settings_eval_but_no_example_text(cli, tiny_llama_dir):
    from mlx_rsi.export import export_version

    ws = _workspace(cli, tiny_llama_dir, include_examples=False)
    result = export_version(ws, load_config(ws.config_path), None, ["hf"])
    card = (ws.models_dir / "v1.1" / "hf" / "README.md").read_text()
    assert result.artifacts["hf"]
    meta = yaml.safe_load(card.split("---")[1])
    assert "base_model" not in meta  # a local base folder has no Hub id to name
    assert meta["license"] == "other" and "mlx-rsi" in meta["tags"]
    assert "the local base model `" in card and str(cli.workspace.parent) not in card
    assert "| train | 41 |" in card and "from 3 sessions" in card
    assert "| rank | 8 |" in card and "backend `peft`" in card
    assert "candidate_pass_rate | 0.8" in card and "parent version v1.0" in card
    for runner in ("transformers", "Intended use"):
        assert runner in card
    assert SECRET_EXAMPLE not in card


def test_card_shows_examples_only_when_asked(cli, tiny_llama_dir):
    from mlx_rsi.export import export_version

    ws = _workspace(cli, tiny_llama_dir, include_examples=True)
    export_version(ws, load_config(ws.config_path), None, ["hf"])
    assert SECRET_EXAMPLE in (ws.models_dir / "v1.1" / "hf" / "README.md").read_text()


def test_embedded_gemma_base_names_the_gemma_terms(tmp_path):
    base = tmp_path / "gemma3-270m-hf"
    base.mkdir()
    (base / "mlx-rsi-source.json").write_text("{}")
    base_id, license_id, text = cards.base_identity("gemma3-270m", base)
    assert (base_id, license_id) == ("google/gemma-3-270m", "gemma")
    info = cards.CardInfo("x", "v1.1", base_id, license_id, text)
    card = cards.render_card(info, "gguf", ["x-q8_0.gguf"])
    assert "Gemma Terms of Use" in card and "license: gemma" in card
    assert "llama-cli -m x-q8_0.gguf" in card and "ollama create" in card
    assert "LoRA fine-tune" in card
    base = cards.render_card(
        cards.CardInfo("x", "v1.0", base_id, license_id, text, fine_tuned=False), "gguf", []
    )
    assert "no fine-tuning" in base and "fine-tuned" not in base.split("---")[1]


def test_modelfile_for_each_known_template():
    from backends.chat import CHATML_TEMPLATE

    chatml = cards.render_modelfile("m.gguf", CHATML_TEMPLATE, "<|im_end|>")
    assert chatml.startswith("FROM ./m.gguf") and "<|im_start|>assistant" in chatml
    assert chatml.count('PARAMETER stop "<|im_end|>"') == 1
    alpaca = cards.render_modelfile("m.gguf", "### Instruction:\n{{ x }}", "<eos>")
    assert "### Response:" in alpaca and 'PARAMETER stop "### Instruction:"' in alpaca
    gemma = cards.render_modelfile("m.gguf", "<start_of_turn>user", "<eos>")
    assert "<start_of_turn>model" in gemma and 'PARAMETER stop "<end_of_turn>"' in gemma
    unknown = cards.render_modelfile("m.gguf", "{{ messages }}", "</s>")
    assert "TEMPLATE" not in unknown and 'PARAMETER stop "</s>"' in unknown
