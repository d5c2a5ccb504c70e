"""The model card (README.md) in every exported folder, and the Ollama Modelfile.

A card says what the model is built on and under which license (the embedded Gemma
base carries the Gemma terms: a published card must name them), which dataset
version trained it (counts only: example text appears only with
``publish.include_examples``), the training settings, the evaluation against the
parent version, and how to run each format. Its YAML header (``base_model``,
``license``, tags) is what the Hub indexes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from backends.chat import ALPACA_PREAMBLE, CHATML_END

GEMMA_TERMS = "Gemma Terms of Use (https://ai.google.dev/gemma/terms)"
EMBEDDED_BASE_ID = "google/gemma-3-270m"
TRAINING_KEYS = (
    "rank",
    "alpha",
    "dropout",
    "target_modules",
    "num_layers",
    "learning_rate",
    "schedule",
    "epochs",
    "max_steps",
    "batch_size",
    "grad_accum",
    "cutoff_len",
    "template",
)
EVAL_KEYS = (
    "baseline",
    "baseline_pass_rate",
    "candidate_pass_rate",
    "baseline_loss",
    "candidate_loss",
    "promote",
    "reason",
)


@dataclass
class CardInfo:
    """What a card tells; filled from the workspace records by the export stage."""

    name: str  # e.g. "my-assistant-v1.3"
    version: str
    base_model: str  # a Hub id when known, else the folder name
    license: str  # a Hub license id ("gemma", "apache-2.0", "other" …)
    license_text: str = ""  # the terms' full name, for licenses that need naming
    parent: str | None = None
    dataset: str | None = None
    dataset_counts: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    parity: list[dict[str, Any]] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)  # only with include_examples
    repo_id: str | None = None
    fine_tuned: bool = True  # False: the base model itself (`mlx-rsi export base`)

    def metadata(self, library: str) -> dict[str, Any]:
        meta: dict[str, Any] = {
            **({"base_model": self.base_model} if is_hub_id(self.base_model) else {}),
            "license": self.license,
            "library_name": library,
            "pipeline_tag": "text-generation",
            "tags": [
                "mlx-rsi",
                *(["lora", "fine-tuned"] if self.fine_tuned else []),
                *self._format_tags(),
            ],
        }
        if self.license == "other" and self.license_text:
            meta["license_name"] = self.license_text.split(" (")[0].lower().replace(" ", "-")
        return meta

    def _format_tags(self) -> list[str]:
        tags = []
        if any(f.startswith("gguf") or f == "ollama" for f in self.formats):
            tags.append("gguf")
        if any(f.startswith("mlx") for f in self.formats):
            tags.append("mlx")
        return tags


def base_identity(base_name: str, base_dir: Path) -> tuple[str, str, str]:
    """(base_model id, license id, license text) of a base model."""
    from mlx_rsi.export.fuse import EMBEDDED_MARKER

    if (Path(base_dir) / EMBEDDED_MARKER).is_file():  # the embedded Gemma-3-270M
        return EMBEDDED_BASE_ID, "gemma", GEMMA_TERMS
    front = _front_matter(Path(base_dir) / "README.md")
    declared = front.get("base_model")
    if is_hub_id(base_name) and not Path(base_name).exists():
        base_id = base_name
    elif isinstance(declared, str) and is_hub_id(declared):
        base_id = declared
    else:  # a local folder: its name only (a card never shows the owner's paths)
        base_id = Path(base_name).expanduser().name or Path(base_dir).name
    license_id = str(front.get("license") or "other")
    text = GEMMA_TERMS if license_id == "gemma" else str(front.get("license_name") or "")
    return base_id, license_id, text


def is_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(p and p not in (".", "..") and " " not in p for p in parts)


def _front_matter(readme: Path) -> dict[str, Any]:
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError:
        return {}
    if not text.startswith("---"):
        return {}
    block = text.split("---", 2)[1] if text.count("---") >= 2 else ""
    try:
        data = yaml.safe_load(block)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def render_card(info: CardInfo, library: str, files: list[str]) -> str:
    header = yaml.safe_dump(info.metadata(library), sort_keys=False, allow_unicode=True)
    parts = [f"---\n{header}---\n", f"# {info.name}\n", _about(info), _license(info)]
    parts += [_data(info), _training(info), _evaluation(info), _parity(info), _files(files)]
    parts += [_usage(info, library, files), _intended_use(), _examples(info)]
    return "\n".join(p for p in parts if p).rstrip() + "\n"


def _about(info: CardInfo) -> str:
    link = (
        f"[{info.base_model}](https://huggingface.co/{info.base_model})"
        if is_hub_id(info.base_model)
        else f"the local base model `{info.base_model}`"
    )
    if not info.fine_tuned:
        return f"The base model {link}, converted by mlx-rsi (no fine-tuning).\n"
    parent = f", parent version {info.parent}" if info.parent else ""
    return (
        f"Version {info.version} of a LoRA fine-tune of {link}{parent}, trained by mlx-rsi on "
        "the owner's own work sessions, adapter merged into the base weights.\n"
    )


def _license(info: CardInfo) -> str:
    terms = info.license_text or info.license
    return (
        f"## License\n\nThe base model's license applies: **{terms}**. Use and redistribution "
        "of this derivative are subject to it.\n"
    )


def _data(info: CardInfo) -> str:
    if not info.dataset:
        return ""
    counts = info.dataset_counts.get("counts") or {}
    rows = "".join(f"| {split} | {n} |\n" for split, n in counts.items())
    table = f"\n| split | examples |\n|---|---|\n{rows}" if rows else ""
    sessions = info.dataset_counts.get("sessions")
    n_sessions = len(sessions) if isinstance(sessions, (list, dict)) else sessions
    extra = f" from {n_sessions} sessions" if n_sessions else ""
    return (
        f"## Training data\n\nDataset version **{info.dataset}**{extra}: curated from the "
        f"owner's session logs, secrets redacted before storage.{table}\n"
    )


def _training(info: CardInfo) -> str:
    if not info.training:
        return ""
    backend = info.training.get("backend")
    head = f"LoRA, backend `{backend}`.\n\n" if backend else ""
    return _key_table("Training settings", head, "setting", info.training, TRAINING_KEYS)


def _evaluation(info: CardInfo) -> str:
    if not info.evaluation:
        return ""
    title = "Evaluation against the parent version"
    return _key_table(title, "", "measure", info.evaluation, EVAL_KEYS)


def _key_table(
    title: str, head: str, column: str, values: dict[str, Any], keys: tuple[str, ...]
) -> str:
    rows = "".join(
        f"| {key} | {_show(values[key])} |\n" for key in keys if values.get(key) is not None
    )
    return f"## {title}\n\n{head}| {column} | value |\n|---|---|\n{rows}"


def _parity(info: CardInfo) -> str:
    if not info.parity:
        return ""
    rows = "".join(
        f"| {p['file']} | {'yes' if p['tokenizer_equal'] else 'no'} | {p['agreement']:.0%} | "
        f"{'ok' if p['ok'] else 'MISMATCH'} |\n"
        for p in info.parity
    )
    return (
        "## GGUF parity with transformers\n\nGreedy continuations of llama.cpp vs transformers "
        "on the same prompts (f16/bf16/q8_0 must be identical, except after a measured "
        "near-tie).\n\n| file | same prompt tokens | "
        f"greedy agreement | result |\n|---|---|---|---|\n{rows}"
    )


def _files(files: list[str]) -> str:
    if not files:
        return ""
    return "## Files\n\n" + "".join(f"- `{f}`\n" for f in files)


def _usage(info: CardInfo, library: str, files: list[str]) -> str:
    repo = info.repo_id or "."
    ggufs = [f for f in files if f.endswith(".gguf")]
    blocks = ["## How to run\n"]
    if library == "mlx":
        blocks.append(f"mlx-lm:\n\n```bash\nmlx_lm.generate --model {repo} --prompt 'Hello'\n```\n")
    if library == "transformers":
        blocks.append(
            "transformers:\n\n```python\nfrom transformers import pipeline\n"
            f'chat = pipeline("text-generation", model="{repo}")\n'
            'print(chat([{"role": "user", "content": "Hello"}], max_new_tokens=64))\n```\n'
        )
    if ggufs:
        blocks.append(
            f"llama.cpp:\n\n```bash\nllama-cli -m {ggufs[0]} -cnv\n```\n\n"
            "Ollama (the `Modelfile` here holds the chat template and stop tokens):\n\n"
            f"```bash\nollama create {info.name} -f Modelfile\nollama run {info.name}\n```\n"
        )
    return "\n".join(blocks)


def _intended_use() -> str:
    return (
        "## Intended use\n\nA personal assistant adapted to its owner's own tasks and style. "
        "It inherits the base model's limitations; it was evaluated only on held-out "
        "examples from the same sessions. Not for safety-critical use.\n"
    )


def _examples(info: CardInfo) -> str:
    if not info.examples:
        return ""
    shown = "\n".join(f"```json\n{json.dumps(e, ensure_ascii=False)}\n```" for e in info.examples)
    return f"## Example training data\n\n{shown}\n"


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value).replace("|", "/").replace("\n", " ")


# --------------------------------------------------------------------------- Ollama

_OLLAMA_TEMPLATES = {
    "chatml": (
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
        "{{ end }}<|im_start|>assistant\n"
    ),
    "alpaca": (
        "{{ if .System }}{{ .System }}{{ else }}" + ALPACA_PREAMBLE + "{{ end }}\n\n"
        '{{- range .Messages }}{{ if eq .Role "user" }}\n\n### Instruction:\n{{ .Content }}'
        '{{ else if eq .Role "assistant" }}\n\n### Response:\n{{ .Content }}{{ end }}'
        "{{ end }}\n\n### Response:\n"
    ),
    "gemma": (
        "{{- range .Messages }}<start_of_turn>"
        '{{ if eq .Role "assistant" }}model{{ else }}{{ .Role }}{{ end }}\n'
        "{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n"
    ),
}
_OLLAMA_STOPS = {
    "chatml": [CHATML_END],
    "alpaca": ["### Instruction:", "### Response:"],
    "gemma": ["<end_of_turn>"],
}


def template_family(chat_template: str | None) -> str | None:
    """Which of the known chat formats a jinja template renders (None if unknown)."""
    text = chat_template or ""
    if CHATML_END in text:
        return "chatml"
    if "### Instruction" in text:
        return "alpaca"
    if "<start_of_turn>" in text:
        return "gemma"
    return None


def render_modelfile(gguf_name: str, chat_template: str | None, eos: str | None) -> str:
    """An Ollama Modelfile for ``gguf_name`` with the chat template the model was trained with."""
    family = template_family(chat_template)
    lines = [f"FROM ./{gguf_name}", ""]
    if family is None:
        lines.append("# The chat template is read from the GGUF (tokenizer.chat_template).")
        stops = [eos] if eos else []
    else:
        lines.append(f'TEMPLATE """{_OLLAMA_TEMPLATES[family]}"""')
        stops = [*_OLLAMA_STOPS[family], *([eos] if eos else [])]
    lines += [f'PARAMETER stop "{s}"' for s in dict.fromkeys(stops)]
    lines += ["PARAMETER temperature 0.7", ""]
    return "\n".join(lines)
