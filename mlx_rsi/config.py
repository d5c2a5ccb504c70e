"""Configuration: frozen dataclasses loaded from YAML and validated.

One YAML with sections ``model, sources, curate, synth, train, eval, export,
publish, schedule``. The ``train`` section uses LLaMA-Factory's key names, so the
seed guide's flat training YAML (``model_name_or_path``, ``lora_rank`` …) is also
accepted as a whole file: it becomes the train section.

Validation collects every problem (unknown key with file, line and the closest
valid key; wrong type; out of range) into one :class:`ConfigError` line.
Precedence: command line > YAML > defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mlx_rsi.artifact_formats import expand_formats
from mlx_rsi.errors import ConfigError, UsageError

# --------------------------------------------------------------------------- sections


def _range(lo: float | None = None, hi: float | None = None, **extra: Any) -> dict[str, Any]:
    return {"min": lo, "max": hi, **extra}


@dataclass(frozen=True)
class ModelConfig:
    # A local HF-layout folder, or "gemma3-270m" (the embedded base model, FACTS.md).
    base: str = "gemma3-270m"
    name: str = "my-assistant"  # the fine-tuned model's name (versions, cards, identity)


@dataclass(frozen=True)
class WatchedFolder:
    path: str
    format: str = "auto"  # auto-detect by content, or a format name (mlx-rsi ingest --help)
    include: tuple[str, ...] = ()  # globs; empty = the section's defaults
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourcesConfig:
    # Folders scanned by `train`/`watch`; `init` adds ./sessions (the collector's) and,
    # when asked, the assistants' standard locations.
    watch: tuple[WatchedFolder, ...] = (WatchedFolder("sessions", "collector"),)
    include: tuple[str, ...] = ("*.jsonl", "*.json", "*.md")
    exclude: tuple[str, ...] = ("*.tmp", "*.partial", ".*")
    max_line_bytes: int = field(default=32 * 1024 * 1024, metadata=_range(1024))
    # A JSON document (ChatGPT export, Gemini session .json) bigger than this is skipped.
    max_document_bytes: int = field(default=1024 * 1024 * 1024, metadata=_range(1024))
    # File names taken even when an exclude glob matches (Aider's history is a dot-file).
    always_include: tuple[str, ...] = (".aider.chat.history.md",)
    correction_phrases: tuple[str, ...] = (
        "that's wrong",
        "that is wrong",
        "that's not right",
        "that is not right",
        "no, ",
        "wrong",
        "doesn't work",
        "does not work",
        "didn't work",
        "still failing",
        "you broke",
        "revert",
        "undo",
    )


SEED_CATEGORIES: dict[str, tuple[str, ...]] = {
    "security": ("token", "password", "validation"),
    "documentation": ("readme", "guide", "docs"),
    "deployment": ("deploy", "upload", "hf"),
    "format": ("gguf", "mlx", "convert"),
    "error": ("fix", "error", "handle"),
}


# A category rule starting with this is a Python regex; others are keywords.
CATEGORY_REGEX_PREFIX = "re:"
DEFAULT_SCORE_RULES: dict[str, float] = {
    "feedback_positive": 1.0,  # explicit success / thumbs up / "y"
    "feedback_negative": 0.5,  # explicit failure (seed: 0.5)
    "unlabeled": 0.9,  # no feedback: the starting score
    "tool_success": 0.05,  # per successful tool call (at most +0.1 in all)
    "tool_error": -0.1,  # per failed tool call (at most -0.3 in all)
    "rejection": -0.4,  # the person refused a tool call
    "interrupt": -0.3,  # the person interrupted the answer
    "correction": -0.5,  # the person's next message corrects the answer
}
_SCORE_RULES_IN_0_1 = ("feedback_positive", "feedback_negative", "unlabeled")


@dataclass(frozen=True)
class CurateConfig:
    threshold: float = field(default=0.9, metadata=_range(0.0, 1.0))  # seed step 7
    categories: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(SEED_CATEGORIES))
    category_caps: dict[str, int] = field(default_factory=dict)  # category -> max examples
    max_context_messages: int = field(default=12, metadata=_range(1))
    # Earlier turns always added as (untrained) context; turns after a corrected,
    # rejected or interrupted answer include that answer's turn regardless.
    context_turns: int = field(default=0, metadata=_range(0))
    max_tool_result_chars: int = field(default=4000, metadata=_range(0))  # 0 = no limit
    # Effectiveness rules: overrides of DEFAULT_SCORE_RULES (above; mlx_rsi/curate/score.py).
    score_rules: dict[str, float] = field(default_factory=dict)
    near_duplicate_threshold: float = field(default=0.85, metadata=_range(0.0, 1.0))
    redact_emails: bool = True
    redact_home_paths: bool = True
    # Extra user names replaced by <USER> as whole words (plus the current user's
    # login name when redact_current_user is on and it is not a generic one like "root").
    usernames: tuple[str, ...] = ()
    redact_current_user: bool = True
    # Addresses kept as they are (fnmatch globs, lower-case).
    email_allowlist: tuple[str, ...] = (
        "git@*",
        "noreply@*",
        "no-reply@*",
        "*@example.com",
        "*@example.org",
        "*@example.net",
    )
    # Extra secret formats, kind -> Python regex; matches become <SECRET:kind>.
    secret_patterns: dict[str, str] = field(default_factory=dict)
    # Runs of base64 at least this long are dropped as <BASE64> (images, blobs).
    base64_min_chars: int = field(default=400, metadata=_range(64))
    valid_fraction: float = field(default=0.1, metadata=_range(0.0, 0.5))
    # Held-out sessions: the held-out suite the gate decides on (eval.min_cases) needs cases.
    test_fraction: float = field(default=0.2, metadata=_range(0.0, 0.5))
    seed: int = 0

    def problems(self) -> list[tuple[str, str]]:
        """What the types cannot express (regexes, rule names): (key, "key…: why")."""
        return [
            *_category_problems(self.categories),
            *_score_rule_problems(self.score_rules),
            *_regex_problems("secret_patterns", self.secret_patterns),
            *(
                ("category_caps", f"category_caps.{name} must be >= 0, got {cap}")
                for name, cap in self.category_caps.items()
                if cap < 0
            ),
        ]


@dataclass(frozen=True)
class IdentityConfig:
    name: str = "my-assistant"
    org: str = "its owner"
    mission: str = "help with everyday engineering work"
    capabilities: tuple[str, ...] = ("coding", "debugging", "documentation", "deployment")
    values: tuple[str, ...] = ("security", "correctness", "clarity")


@dataclass(frozen=True)
class SynthConfig:
    templates: tuple[str, ...] = (  # seed step 8
        "How do I {task}?",
        "Can you help me {task}?",
        "I need to {task}",
        "Please {task}",
        "What's the best way to {task}?",
    )
    max_variations: int = field(default=3, metadata=_range(0))  # per source example
    max_task_chars: int = field(default=200, metadata=_range(1))  # longer requests: no variations
    identity: IdentityConfig = IdentityConfig()
    include_identity: bool = True  # seed DO #3: identity examples in every version
    # Everyday requests mixed into train, this share of the curated examples (0 = off).
    general_replay: float = field(default=0.2, metadata=_range(0.0, 1.0))
    paraphrases: bool = False  # model-generated instruction paraphrases (slow)
    paraphrases_per_example: int = field(default=1, metadata=_range(1))
    paraphrase_max_examples: int = field(default=50, metadata=_range(0))  # per curate run
    paraphrase_max_tokens: int = field(default=64, metadata=_range(8))


@dataclass(frozen=True)
class TrainConfig:
    """LLaMA-Factory key names (the seed guide's step 11 YAML) plus mlx-rsi's own."""

    backend: Literal["auto", "mlx", "peft"] = "auto"
    model_name_or_path: str | None = None  # overrides model.base when set
    stage: Literal["sft"] = "sft"
    do_train: bool = True
    finetuning_type: Literal["lora", "dora"] = "lora"
    lora_rank: int = field(default=8, metadata=_range(1, 1024))
    lora_alpha: float = field(default=16.0, metadata=_range(0.0))
    lora_dropout: float = field(default=0.1, metadata=_range(0.0, 0.99))
    lora_target: str = "all"  # "all" or comma-separated module names (q_proj,v_proj)
    lora_layers: int | None = field(default=None, metadata=_range(1))  # last N blocks
    use_dora: bool = False
    quantization_bit: int | None = field(default=None, metadata={"choices": (4, 8)})
    dataset: str | None = None  # an existing dataset version/folder; else built from sessions
    template: str = "auto"  # auto = the tokenizer's chat template, else fallback_template
    fallback_template: str = "alpaca"
    cutoff_len: int = field(default=2048, metadata=_range(16))
    # Measured on the embedded 270M model (docs/eval.md): 1e-5 x 1 epoch learned nothing.
    learning_rate: float = field(default=1e-3, metadata=_range(0.0, 1.0))
    lr_scheduler_type: Literal["cosine", "linear", "constant"] = "cosine"
    num_train_epochs: float = field(default=3.0, metadata=_range(0.0))
    max_steps: int | None = field(default=None, metadata=_range(1))
    # At least this many optimizer steps, but at most max_epochs passes (mlx_rsi/autotune.py).
    min_steps: int = field(default=60, metadata=_range(0))
    max_epochs: float = field(default=10.0, metadata=_range(1.0))
    # Try learning rates x1, x0.5, x2 within the budget; keep the best validation loss.
    auto: bool = True
    auto_budget_minutes: float = field(default=30.0, metadata=_range(0.0))
    # Continue from the current version's adapter on the new examples plus a replayed
    # share of the earlier ones (mlx_rsi/warmstart.py).
    warm_start: bool = False  # off: measured worse than retraining (docs/eval.md)
    warm_replay: float = field(default=0.5, metadata=_range(0.0, 10.0))
    per_device_train_batch_size: int = field(default=2, metadata=_range(1))
    gradient_accumulation_steps: int = field(default=2, metadata=_range(1))
    warmup_ratio: float = field(default=0.1, metadata=_range(0.0, 1.0))
    save_steps: int = field(default=50, metadata=_range(1))
    eval_steps: int | None = field(default=None, metadata=_range(1))
    logging_steps: int = field(default=10, metadata=_range(1))
    early_stopping_patience: int | None = field(default=None, metadata=_range(1))
    gradient_checkpointing: bool = False
    bf16: bool = False
    fp16: bool = False
    seed: int = 42
    output_dir: str | None = None  # where the final adapter is also copied (workspace-relative)


@dataclass(frozen=True)
class TestCase:
    input: str
    expected: tuple[str, ...] = ()  # keywords the answer must contain (seed step 13)
    must_not_contain: tuple[str, ...] = ()
    category: str = "general"


@dataclass(frozen=True)
class EvalConfig:
    # Promote only when the primary suites' success rate improves with the paired
    # bootstrap CI's lower bound above this (0.05 = at least 5 points).
    min_improvement: float = field(default=0.0, metadata=_range(0.0, 1.0))
    max_new_tokens: int = field(default=64, metadata=_range(1))
    suites: tuple[str, ...] = ()  # extra suite files (YAML); kind from the file (primary)
    guard_suites: tuple[str, ...] = ()  # extra suite files used as guards
    builtin_guards: bool = True  # identity + general ability prompts as guards
    min_cases: int = field(default=10, metadata=_range(1))  # fewer: "insufficient evidence"
    block_on_insufficient: bool = True  # insufficient evidence blocks promotion
    guard_tolerance: float = field(default=0.1, metadata=_range(0.0, 1.0))  # max guard drop
    loss_tolerance: float = field(default=0.0, metadata=_range(0.0))  # held-out loss may rise
    confidence: float = field(default=0.95, metadata=_range(0.5, 0.999))
    bootstrap_resamples: int = field(default=2000, metadata=_range(100))
    seed: int = 0
    heldout_phrases: int = field(default=1, metadata=_range(1, 5))  # expected per held-out case
    test_cases: tuple[TestCase, ...] = (
        TestCase("How do I secure API tokens?", ("environment variables", "not command line")),
        TestCase("Fix year from 2024 to 2025", ("search", "replace", "2025")),
    )


@dataclass(frozen=True)
class ExportConfig:
    # What a cycle exports after promotion: mlx, mlx-q4, mlx-q8, hf, gguf-<type>, ollama;
    # "gguf" = every type in gguf_types; "mlx" also adds mlx-q<bits> per mlx_quantize_bits.
    formats: tuple[str, ...] = ("hf",)
    gguf_types: tuple[str, ...] = ("f16", "q8_0", "q4_k_m")
    mlx_quantize_bits: tuple[int, ...] = ()

    def problems(self) -> list[tuple[str, str]]:
        """Unknown format names, GGUF types or bit widths: (key, "key…: why")."""
        found = _format_problems("formats", self.formats, self)
        found += _format_problems("gguf_types", [f"gguf-{t}" for t in self.gguf_types], self)
        bits = [f"mlx-q{b}" for b in self.mlx_quantize_bits]
        found += _format_problems("mlx_quantize_bits", bits, self)
        return found


@dataclass(frozen=True)
class PublishConfig:
    repo_id: str | None = None
    private: bool = True
    endpoint: str | None = None  # a Hub-compatible endpoint; None = huggingface.co
    formats: tuple[str, ...] = ()  # what to upload; () = every exported format
    layout: Literal["subfolders", "repo-per-format"] = "subfolders"
    include_examples: bool = False  # example text in the model card (off: counts only)
    auto: bool = False  # `mlx-rsi watch` publishes each version it promotes (needs repo_id)

    def problems(self) -> list[tuple[str, str]]:
        return _format_problems("formats", self.formats, ExportConfig())


@dataclass(frozen=True)
class ScheduleConfig:
    """When `mlx-rsi watch` runs a cycle (mlx_rsi/daemon/, docs/watch.md)."""

    cron: str | None = None  # e.g. "0 2 * * 1" (seed step 18: Mondays 02:00)
    min_new_examples: int = field(default=20, metadata=_range(0))  # seed step 18
    debounce_seconds: float = field(default=30.0, metadata=_range(0.0))
    rescan_minutes: float = field(default=60.0, metadata=_range(0.1))  # safety net
    require_ac_power: bool = True  # where detectable; unknown counts as on AC
    min_cpu_idle: float = field(default=50.0, metadata=_range(0.0, 100.0))  # % of others' use
    busy_hours: tuple[str, ...] = ()  # e.g. ["09:00-18:00"]: no training then
    check_seconds: float = field(default=60.0, metadata=_range(1.0))  # quiet/trigger polls
    priority: Literal["normal", "low", "background"] = "low"


@dataclass(frozen=True)
class ServeConfig:
    # auto: MLX on Apple silicon, else transformers; gguf: llama-cpp-python on the GGUF export.
    engine: Literal["auto", "transformers", "mlx", "gguf"] = "auto"
    host: str = "127.0.0.1"  # any other address needs $MLX_RSI_SERVE_TOKEN
    port: int = field(default=8800, metadata=_range(1, 65535))
    max_tokens: int = field(default=512, metadata=_range(1))  # when a request sets none
    max_prompt_tokens: int = field(default=4096, metadata=_range(16))  # longer → HTTP 413
    record: bool = True  # append each interaction to sessions/serve-<date>/ (the loop's input)


@dataclass(frozen=True)
class Config:
    model: ModelConfig = ModelConfig()
    sources: SourcesConfig = SourcesConfig()
    curate: CurateConfig = CurateConfig()
    synth: SynthConfig = SynthConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    export: ExportConfig = ExportConfig()
    publish: PublishConfig = PublishConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    serve: ServeConfig = ServeConfig()

    @property
    def base_model(self) -> str:
        return self.train.model_name_or_path or self.model.base


SECTIONS = tuple(f.name for f in dataclasses.fields(Config))
TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig))

# --------------------------------------------------------------------------- loading


def load_config(path: Path | None) -> Config:
    """The config at ``path`` (defaults when None). Raises one ConfigError line."""
    if path is None:
        return Config()
    text = _read(path)
    node = _compose(text, path)
    if node is None:
        raise ConfigError(
            f"{path}: the config file is empty (no settings at all)",
            hint="write the settings you want, recreate it with `mlx-rsi init --force`, "
            "or leave out --config to use the defaults",
        )
    problems: list[str] = []
    raw = _to_python(node, path, problems)
    if not isinstance(raw, _Located):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {_show(raw)}")
    if _looks_flat(raw):  # the seed's LLaMA-Factory YAML: the whole file is `train`
        raw = _Located({"train": raw}, {"train": 1})
    config = _build(Config, raw, "", path, problems)
    if problems:
        count = f"{len(problems)} problems: " if len(problems) > 1 else ""
        raise ConfigError(f"{path}: {count}{'; '.join(problems)}")
    assert isinstance(config, Config)
    return config


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(
            f"config file not found: {path}", hint="create one with `mlx-rsi init`"
        ) from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config {path}: {e}") from e


class _Loader(yaml.SafeLoader):
    """Our own SafeLoader subclass: never patch yaml.SafeLoader globally (STYLE.md)."""


# YAML 1.1 reads "1e-5" as a string; accept exponent floats without a dot.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def _compose(text: str, path: Path) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from e


@dataclass
class _Located:
    """A mapping value with the line of each key, for error messages."""

    values: dict[str, Any]
    lines: dict[str, int]


def _to_python(node: yaml.Node, path: Path, problems: list[str]) -> Any:
    if isinstance(node, yaml.MappingNode):
        values: dict[str, Any] = {}
        lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(_Loader(" ").construct_object(key_node))
            if key in values:  # YAML would silently keep the last one
                problems.append(
                    f"{key!r} is given twice (lines {lines[key]} and "
                    f"{key_node.start_mark.line + 1}): keep one"
                )
            values[key] = _to_python(value_node, path, problems)
            lines[key] = key_node.start_mark.line + 1
        return _Located(values, lines)
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, path, problems) for item in node.value]
    return _Loader(" ").construct_object(node)


def _looks_flat(raw: Any) -> bool:
    if not isinstance(raw, _Located):
        return False
    keys = set(raw.values)
    return bool(keys) and not keys & set(SECTIONS) and bool(keys & set(TRAIN_KEYS))


# --------------------------------------------------------------------------- validation


def _build(cls: type, raw: Any, where: str, path: Path, problems: list[str]) -> Any:
    """An instance of dataclass ``cls`` from ``raw`` (a _Located mapping)."""
    if not isinstance(raw, _Located):
        problems.append(f"{where or 'top level'} must be a mapping, got {_show(raw)}")
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    found_before = len(problems)
    for key, value in raw.values.items():
        dotted = f"{where}.{key}" if where else key
        line = raw.lines.get(key, 0)
        if key not in fields:
            problems.append(_unknown_key(key, dotted, line, list(fields)))
            continue
        before = len(problems)
        converted = _convert(value, hints[key], dotted, line, path, problems)
        if len(problems) == before:
            _check_range(converted, fields[key].metadata, dotted, line, problems)
            kwargs[key] = converted
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        problems.append(f"{where or 'top level'}: missing required key(s) {', '.join(missing)}")
        return None
    built = cls(**kwargs)
    if len(problems) == found_before and hasattr(built, "problems"):
        for key, text in built.problems():
            dotted = f"{where}.{text}" if where else text
            problems.append(f"line {raw.lines.get(key, 0)}: {dotted}")
    return built


# --------------------------------------------------------------------------- section rules


def _format_problems(key: str, names: Any, export: ExportConfig) -> list[tuple[str, str]]:
    """Export format names checked by the artifact formats table (a vocabulary module: no stage)."""
    try:
        expand_formats(list(names), export.gguf_types, export.mlx_quantize_bits)
    except UsageError as e:
        return [(key, f"{key}: {e.one_line()}")]
    return []


def _regex_problems(key: str, patterns: dict[str, str]) -> list[tuple[str, str]]:
    found = []
    for name, pattern in patterns.items():
        try:
            re.compile(pattern)
        except re.error as e:
            found.append((key, f"{key}.{name}: invalid regex {pattern!r}: {e}"))
    return found


def _category_problems(categories: dict[str, tuple[str, ...]]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for name, rules in categories.items():
        regexes = {
            f"{name}[{index}]": rule[len(CATEGORY_REGEX_PREFIX) :]
            for index, rule in enumerate(rules)
            if rule.startswith(CATEGORY_REGEX_PREFIX)
        }
        found += _regex_problems("categories", regexes)
    return found


def _score_rule_problems(rules: dict[str, float]) -> list[tuple[str, str]]:
    found = []
    for name, value in rules.items():
        where = f"score_rules.{name}"
        if name not in DEFAULT_SCORE_RULES:
            valid = ", ".join(DEFAULT_SCORE_RULES)
            found.append(("score_rules", f"{where}: unknown rule (valid: {valid})"))
        elif name in _SCORE_RULES_IN_0_1 and not 0.0 <= value <= 1.0:
            found.append(("score_rules", f"{where} must be between 0 and 1, got {value}"))
        elif not -1.0 <= value <= 1.0:
            found.append(("score_rules", f"{where} must be between -1 and 1, got {value}"))
    return found


def _unknown_key(key: str, dotted: str, line: int, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(valid)}"
    return f"line {line}: unknown key '{dotted}' ({hint})"


def _convert(value: Any, hint: Any, dotted: str, line: int, path: Path, problems: list[str]) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], dotted, line, path, problems)
    if origin is Literal:
        if value not in args:
            choices = ", ".join(str(a) for a in args)
            problems.append(f"line {line}: {dotted} must be one of {choices}, got {_show(value)}")
        return value
    if origin is tuple:
        return _convert_sequence(value, args[0], dotted, line, path, problems)
    if origin is dict:
        return _convert_mapping(value, args[1], dotted, line, path, problems)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, dotted, path, problems)  # type: ignore[arg-type]
    return _convert_scalar(value, hint, dotted, line, problems)


def _convert_sequence(
    value: Any, item: Any, dotted: str, line: int, path: Path, problems: list[str]
) -> tuple[Any, ...]:
    if isinstance(value, str | _Located) or not isinstance(value, list):
        if isinstance(value, str) and item is str:
            return (value,)  # a single string where a list is expected
        problems.append(f"line {line}: {dotted} must be a list, got {_show(value)}")
        return ()
    return tuple(
        _convert(v, item, f"{dotted}[{i}]", line, path, problems) for i, v in enumerate(value)
    )


def _convert_mapping(
    value: Any, item: Any, dotted: str, line: int, path: Path, problems: list[str]
) -> dict[str, Any]:
    if not isinstance(value, _Located):
        problems.append(f"line {line}: {dotted} must be a mapping, got {_show(value)}")
        return {}
    return {
        k: _convert(v, item, f"{dotted}.{k}", value.lines.get(k, line), path, problems)
        for k, v in value.values.items()
    }


def _convert_scalar(value: Any, hint: Any, dotted: str, line: int, problems: list[str]) -> Any:
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if hint in (int, bool, str) and type(value) is hint:
        return value
    if hint is Any:
        return value
    expected = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}
    problems.append(f"line {line}: {dotted} must be {expected.get(hint, hint)}, got {_show(value)}")
    return value


def _check_range(value: Any, meta: Any, dotted: str, line: int, problems: list[str]) -> None:
    if value is None or not meta:
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join(str(c) for c in choices)
        problems.append(f"line {line}: {dotted} must be one of {allowed}, got {value}")
        return
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        problems.append(f"line {line}: {dotted} must be {bounds}, got {value}")


def _show(value: Any) -> str:
    if isinstance(value, _Located):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


# --------------------------------------------------------------------------- overrides


def with_overrides(config: Config, section: str, **values: Any) -> Config:
    """A copy of ``config`` with ``section``'s keys replaced (command line > YAML)."""
    present = {k: v for k, v in values.items() if v is not None}
    if not present:
        return config
    updated = dataclasses.replace(getattr(config, section), **present)
    return dataclasses.replace(config, **{section: updated})


def to_plain(config: Any) -> Any:
    """Plain dicts/lists of a config, for writing it beside runs and versions."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_plain(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, tuple | list):
        return [to_plain(v) for v in config]
    if isinstance(config, dict):
        return {k: to_plain(v) for k, v in config.items()}
    return config
