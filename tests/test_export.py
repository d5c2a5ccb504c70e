"""`mlx-rsi export`: every format of tiny real models, checked by the program that runs it.

GGUF files load in llama.cpp (llama-cpp-python) and f16/q8_0 greedy tokens equal
transformers'; MLX exports load and generate in mlx-lm; the HF export loads in
transformers. Bad input (existing output, missing tokenizer, disk full, unknown
architecture or pre-tokenizer) is one line and leaves nothing that looks complete.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from mlx_rsi import registry
from mlx_rsi.config import load_config
from mlx_rsi.errors import MlxRsiError
from mlx_rsi.workspace import Workspace

needs_llama_cpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed"
)


def make_version_workspace(cli, base: Path, fused: Path | None = None, **config: str) -> Workspace:
    """A workspace whose current version v1.1 has the fused model ``fused`` (default: base)."""
    assert cli("init", "--no-standard-sources").exit_code == 0
    extra = "".join(f"{line}\n" for line in config.values())
    (cli.workspace / "mlx-rsi.yaml").write_text(f"model:\n  base: {base}\n{extra}")
    ws = Workspace(cli.workspace)
    shutil.copytree(fused or base, ws.models_dir / "v1.1" / "hf")
    conn = ws.store()
    try:
        registry.record_version(
            conn,
            registry.Version(
                "v1.1",
                "candidate",
                "v1.0",
                eval={"baseline": "base", "candidate_loss": 1.5, "baseline_loss": 2.0},
            ),
        )
        registry.promote(conn, "v1.1")
    finally:
        conn.close()
    return ws


def config_of(ws: Workspace):
    return load_config(ws.config_path)


DOMAIN_PROMPTS = [
    "The quick brown fox jumps",
    "def add(a: int, b: int) -> int:",
    "Please read the file, run the",
    "for i in range(10):\n    if",
]


def fine_tune(src: Path, out: Path, steps: int = 40) -> Path:
    """A copy of ``src`` briefly trained on the tiny corpus (a few seconds, one thread).

    Random weights give nearly flat next-token distributions, where the last bits of
    f16/q8_0 rounding pick between near-equal tokens; a model that learned something
    (as every exported model has) makes confident choices, like the real ones.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mlx_rsi.tinymodel import tiny_corpus

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        tokenizer = AutoTokenizer.from_pretrained(str(src))
        model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32)
        texts = sorted(set(tiny_corpus()))[:24]
        batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=24)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for _ in range(steps):
            model(**batch, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    finally:
        torch.set_num_threads(threads)
    shutil.copytree(src, out)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tuned_models(tmp_path_factory, tiny_llama_dir, tiny_qwen2_dir, tiny_gemma_dir):
    root = tmp_path_factory.mktemp("tuned")
    sources = {"llama": tiny_llama_dir, "qwen2": tiny_qwen2_dir, "gemma3": tiny_gemma_dir}
    return {arch: fine_tune(src, root / arch) for arch, src in sources.items()}


@needs_llama_cpp
@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
def test_every_gguf_variant_loads_and_matches_transformers(tuned_models, arch, tmp_path):
    from mlx_rsi.export.gguf import write_gguf
    from mlx_rsi.export.parity import check_gguf, reference

    model = tuned_models[arch]
    ref = reference(model, DOMAIN_PROMPTS)
    results = {}
    for qtype in ("f16", "bf16", "q8_0", "q4_k_m"):
        path = write_gguf(model, tmp_path / f"{arch}-{qtype}.gguf", qtype)
        results[qtype] = check_gguf(path, qtype, ref)  # loads it in llama.cpp
    for parity in results.values():
        assert parity.tokenizer_ok, parity.summary()  # same prompt ids as transformers
    for prompt in results["f16"].prompts:
        assert prompt.gguf == prompt.reference, prompt.prompt
    for qtype in ("bf16", "q8_0"):
        parity = results[qtype]
        # equal tokens, except after a split where transformers' own top two logits were
        # closer than the difference measured between the two programs (a near-tie)
        assert parity.ok, parity.summary()
        for prompt in parity.prompts:
            assert prompt.gguf[0] == prompt.reference[0] or prompt.within_noise
            if prompt.gguf != prompt.reference:
                assert prompt.tie_margin is not None and prompt.within_noise
    assert 0.0 <= results["q4_k_m"].agreement <= 1.0  # K-quants report their agreement


@needs_llama_cpp
def test_qwen3_gguf_matches_transformers(tiny_qwen2_dir, tmp_path):
    """qwen3 (q_norm/k_norm per head): a tiny one built here with the tiny tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from mlx_rsi.export.gguf import write_gguf
    from mlx_rsi.export.parity import check_gguf, reference

    model_dir = tmp_path / "qwen3"
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_qwen2_dir))
    config = AutoConfig.for_model(
        "qwen3",
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    ref = reference(model_dir, DOMAIN_PROMPTS[:2])
    parity = check_gguf(write_gguf(model_dir, tmp_path / "q3.gguf", "f16"), "f16", ref)
    assert parity.tokenizer_ok and all(p.gguf == p.reference for p in parity.prompts)


@needs_llama_cpp
def test_export_stage_writes_checked_ggufs_modelfile_card_and_record(cli, tuned_models):
    from mlx_rsi.export import export_version

    ws = make_version_workspace(cli, tuned_models["llama"])
    lines: list[str] = []
    formats = ["gguf-f16", "gguf-q8_0", "gguf-q4_k_m", "ollama"]
    result = export_version(ws, config_of(ws), None, formats, report=lines.append)
    by_type = {p.qtype: p for p in result.parity}
    assert set(by_type) == {"f16", "q8_0", "q4_k_m"}
    assert all(p.tokenizer_ok for p in result.parity) and by_type["f16"].ok
    folder = ws.models_dir / "v1.1" / "gguf"
    mask = os.umask(0)
    os.umask(mask)
    for qtype in by_type:
        path = Path(result.artifacts[f"gguf-{qtype}"])
        assert path.is_file() and path.stat().st_mode & 0o777 == 0o666 & ~mask  # not owner-only
    assert not list(folder.glob(".*"))  # no temporary leftovers
    modelfile = (folder / "Modelfile").read_text()
    assert "FROM ./" in modelfile and "q4_k_m.gguf" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and "<|im_start|>" in modelfile
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n") and "license:" in card and "greedy agreement" in card
    assert "| llama-rsi-v1.1-f16.gguf | yes |" in card and ".tmp" not in card
    assert str(ws.root.parent) not in card  # a local base is named, its path never shown
    record = registry.get_version(ws.store(), "v1.1")
    assert record is not None
    assert {p["qtype"] for p in record.eval["export"]["parity"]} == set(by_type)
    assert record.artifacts["gguf-q8_0"].endswith("q8_0.gguf")
    assert any("gguf-f16" in line for line in lines)


def test_gguf_metadata_names_arch_vocab_template(tiny_qwen2_dir, tmp_path):
    import gguf

    from mlx_rsi.export.gguf import write_gguf

    path = write_gguf(tiny_qwen2_dir, tmp_path / "m.gguf", "f16")
    reader = gguf.GGUFReader(str(path))
    fields = {
        k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.ggml.t")
    }
    assert fields["general.architecture"] == "qwen2"
    assert fields["tokenizer.ggml.model"] == "gpt2"
    # transformers loads a qwen2 model's tokenizer with Qwen2's digit-splitting regex
    assert fields["tokenizer.ggml.pre"] == "qwen2"
    assert "<|im_start|>" in fields["tokenizer.chat_template"]
    types = reader.fields["tokenizer.ggml.token_type"]
    assert types.types[-1] == gguf.GGUFValueType.INT32  # llama.cpp refuses unsigned types


@needs_llama_cpp
def test_llama_gguf_loads_in_llama_cpp_and_generates(tiny_llama_dir, tmp_path):
    import llama_cpp

    from mlx_rsi.export.gguf import write_gguf

    path = write_gguf(tiny_llama_dir, tmp_path / "m.gguf", "q8_0")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, verbose=False)
    try:
        out = llm("The answer is", max_tokens=4, temperature=0.0)
    finally:
        llm.close()
    assert out["usage"]["completion_tokens"] >= 1


def test_mlx_exports_load_and_generate_in_mlx_lm(cli, tiny_llama_dir):
    pytest.importorskip("mlx_lm")
    from mlx_lm import generate, load

    from mlx_rsi.export import export_version

    ws = make_version_workspace(cli, tiny_llama_dir)
    result = export_version(ws, config_of(ws), "v1.1", ["mlx", "mlx-q4", "mlx-q8"])
    for fmt in ("mlx", "mlx-q4", "mlx-q8"):
        folder = Path(result.artifacts[fmt])
        model, tokenizer = load(str(folder))
        assert generate(model, tokenizer, prompt="Hello", max_tokens=3, verbose=False)
        config = json.loads((folder / "config.json").read_text())
        assert ("quantization" in config) == (fmt != "mlx")
        assert "library_name: mlx" in (folder / "README.md").read_text()


def test_hf_export_in_base_dtype_loads_in_transformers(cli, tiny_llama_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from mlx_rsi.export import export_version

    base = tmp_path / "bf16-base"
    AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.bfloat16).save_pretrained(base)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tiny_llama_dir / name).is_file():
            shutil.copy(tiny_llama_dir / name, base / name)
    fused32 = tmp_path / "fused32"
    shutil.copytree(tiny_llama_dir, fused32)  # a float32 fused copy, as a CPU fuse leaves it
    ws = make_version_workspace(cli, base, fused32)
    out = tmp_path / "export"
    result = export_version(ws, config_of(ws), "v1.1", ["hf"], out=out)
    model = AutoModelForCausalLM.from_pretrained(result.artifacts["hf"])
    assert model.dtype == torch.bfloat16
    assert json.loads((out / "hf" / "config.json").read_text())["dtype"] == "bfloat16"
    card = (out / "hf" / "README.md").read_text()
    assert "candidate_loss" in card and "1.5" in card  # eval vs parent


@needs_llama_cpp
def test_fuses_a_version_adapter_when_no_fused_model(cli, tiny_llama_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from mlx_rsi.export import export_version

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # a LoRA that changes the outputs
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    ws = make_version_workspace(cli, tiny_llama_dir, train="train:\n  backend: peft")
    shutil.rmtree(ws.models_dir / "v1.1" / "hf")
    conn = ws.store()
    version = registry.get_version(conn, "v1.1")
    assert version is not None
    version.artifacts = {"adapter": str(adapter)}
    registry.record_version(conn, version)
    conn.close()
    result = export_version(ws, config_of(ws), "v1.1", ["hf", "gguf-f16"])
    fused = AutoModelForCausalLM.from_pretrained(result.artifacts["hf"])
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    q_fused = fused.model.layers[0].self_attn.q_proj.weight
    assert not torch.allclose(q_fused, base.model.layers[0].self_attn.q_proj.weight)
    assert result.parity[0].ok


@needs_llama_cpp
def test_cli_export_and_refusals(cli, tiny_llama_dir, tmp_path):
    ws = make_version_workspace(cli, tiny_llama_dir)
    out = tmp_path / "out"
    code, _, stderr = cli.main("export", "--format", "gguf-q8_0", "--out", str(out))
    assert code == 0, stderr
    assert (out / "gguf").is_dir() and (out / "export.json").is_file()
    # an existing, non-empty output folder is refused (one line), --force replaces
    code, _, stderr = cli.main("export", "--format", "gguf-q8_0", "--out", str(out))
    assert code == 1 and "not empty" in stderr and "--force" in stderr
    assert "Traceback" not in stderr
    code, _, stderr = cli.main("export", "--format", "gguf-q8_0", "--out", str(out), "--force")
    assert code == 0, stderr
    code, _, stderr = cli.main("export", "--format", "gguf-q9")
    assert code == 2 and "unknown export format 'gguf-q9'" in stderr
    code, _, stderr = cli.main("export", "v9.9", "--format", "hf")
    assert code == 1 and "no version 'v9.9'" in stderr
    assert ws.root


def test_missing_tokenizer_files_is_one_line(cli, tiny_llama_dir, tmp_path):
    fused = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_llama_dir, fused)
    (fused / "tokenizer.json").unlink()
    make_version_workspace(cli, tiny_llama_dir, fused)
    code, _, stderr = cli.main("export", "--format", "gguf-f16")
    assert code == 1 and "no tokenizer files" in stderr and "Traceback" not in stderr


def test_disk_full_leaves_no_complete_looking_file(cli, tiny_llama_dir, monkeypatch):
    import gguf

    ws = make_version_workspace(cli, tiny_llama_dir)

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", full)
    code, _, stderr = cli.main("export", "--format", "gguf-f16")
    assert code == 1 and "disk full" in stderr
    folder = ws.models_dir / "v1.1" / "gguf"
    assert not list(folder.glob("*")) if folder.exists() else True


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs of its own: a real disk that fills up (root only; skipped otherwise)."""
    from tmpfs import mounted_tmpfs

    with mounted_tmpfs(tmp_path / "small-disk", "2m") as mount:
        yield mount


def test_real_full_disk_is_one_line_and_leaves_nothing(cli, tiny_llama_dir, small_disk):
    make_version_workspace(cli, tiny_llama_dir)
    filler = small_disk / "filler.bin"
    filler.write_bytes(b"\0" * (2 * 1024 * 1024 - 96 * 1024))  # ~96 KiB left
    out = small_disk / "export"
    code, _, stderr = cli.main("export", "--format", "gguf-f32,hf", "--out", str(out))
    assert code == 1 and "disk full while exporting" in stderr, stderr
    assert "Traceback" not in stderr
    left = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert not [p for p in left if p.suffix == ".gguf" or p.name == "config.json"], left


def test_unsupported_architecture_lists_supported(tmp_path, tiny_llama_dir):
    from mlx_rsi.export.gguf import write_gguf

    model = tmp_path / "m"
    shutil.copytree(tiny_llama_dir, model)
    config = json.loads((model / "config.json").read_text())
    config["model_type"] = "gpt_neox"
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(MlxRsiError) as caught:
        write_gguf(model, tmp_path / "x.gguf", "f16")
    message = caught.value.one_line()
    assert "gpt_neox" in message and "llama" in message and "qwen2" in message
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".x.gguf*"))


def test_unknown_pre_tokenizer_is_refused(tmp_path, tiny_llama_dir):
    from mlx_rsi.export.gguf import write_gguf

    model = tmp_path / "m"
    shutil.copytree(tiny_llama_dir, model)
    data = json.loads((model / "tokenizer.json").read_text())
    data["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {
                "type": "ByteLevel",
                "add_prefix_space": False,
                "trim_offsets": True,
                "use_regex": True,
            },
        ],
    }
    (model / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(MlxRsiError, match="pre-tokenizer splits text like none"):
        write_gguf(model, tmp_path / "x.gguf", "f16")


def test_qwen2_style_regex_is_named_qwen2(tmp_path, tiny_qwen2_dir):
    from tokenizers import Tokenizer

    from mlx_rsi.export.vocab import _QWEN2, pre_tokenizer_name

    model = tmp_path / "m"
    shutil.copytree(tiny_qwen2_dir, model)
    data = json.loads((model / "tokenizer.json").read_text())
    data["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {
                "type": "Split",
                "pattern": {"Regex": _QWEN2},
                "behavior": "Isolated",
                "invert": False,
            },
            {
                "type": "ByteLevel",
                "add_prefix_space": False,
                "trim_offsets": False,
                "use_regex": False,
            },
        ],
    }
    (model / "tokenizer.json").write_text(json.dumps(data))
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    assert pre_tokenizer_name(tokenizer, model) == "qwen2"


@needs_llama_cpp
def test_version_record_and_events(cli, tiny_qwen2_dir):
    ws = make_version_workspace(cli, tiny_qwen2_dir)
    code, _, stderr = cli.main("export", "v1.1", "--format", "gguf-f16,hf")
    assert code == 0, stderr
    with sqlite3.connect(ws.db_path) as conn:
        row = conn.execute("SELECT artifacts, eval FROM versions WHERE name='v1.1'").fetchone()
    artifacts, evaluation = json.loads(row[0]), json.loads(row[1])
    assert set(artifacts) >= {"hf", "gguf-f16"}
    assert evaluation["export"]["parity"][0]["ok"] is True
    assert evaluation["candidate_loss"] == 1.5  # the evaluation is kept
    code, _, stderr = cli.main("export", "v1.1", "--format", "hf")
    assert code == 1 and "hf was exported before" in stderr  # the fused hf/ once, then refused


@needs_llama_cpp
@pytest.mark.slow
def test_embedded_gemma_q8_0_matches_transformers(tmp_path):
    from mlx_rsi.basemodel import ensure_base_model
    from mlx_rsi.export.gguf import write_gguf
    from mlx_rsi.export.parity import check_gguf, reference

    base = ensure_base_model()
    path = write_gguf(base, tmp_path / "gemma-q8_0.gguf", "q8_0")
    ref = reference(base, ["The capital of France is", "def add(a, b):\n    return"])
    parity = check_gguf(path, "q8_0", ref)
    assert parity.tokenizer_ok, parity.summary()
    assert parity.ok, parity.summary()
