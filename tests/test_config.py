"""Config loading: seed YAML, defaults, and every kind of bad input → one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx_rsi.config import Config, load_config, with_overrides
from mlx_rsi.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_seed_yaml_parses_as_train_section():
    cfg = load_config(REPO / "configs" / "recursive_v1.1.yaml")
    t = cfg.train
    assert cfg.base_model == "zenlm/zen-nano-instruct"
    assert (t.lora_rank, t.lora_alpha, t.lora_dropout, t.lora_target) == (8, 16.0, 0.1, "all")
    assert t.learning_rate == pytest.approx(1e-5)  # "1e-5" is a string in plain YAML 1.1
    assert (t.per_device_train_batch_size, t.gradient_accumulation_steps) == (2, 4)
    assert t.template == "alpaca" and t.cutoff_len == 2048 and t.bf16 and t.gradient_checkpointing
    assert t.dataset == "recursive_v1.1" and t.output_dir == "./output/recursive_v1.1"
    assert cfg.curate == Config().curate  # other sections keep their defaults


def test_default_config_file_matches_defaults():
    assert load_config(REPO / "configs" / "default.yaml") == Config()


def test_none_means_defaults():
    assert load_config(None) == Config()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mlx-rsi.yaml"
    path.write_text(text)
    return path


def one_line(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    line = exc.value.one_line()
    assert "\n" not in line
    return line


def test_unknown_key_names_file_line_and_closest(tmp_path):
    path = write(tmp_path, "train:\n  lora_rank: 8\n  lora_rnak: 4\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    line = one_line(exc)
    assert str(path) in line and "line 3" in line
    assert "train.lora_rnak" in line and "did you mean 'lora_rank'" in line


def test_a_key_given_twice_is_an_error_not_a_silent_override(tmp_path):
    text = "train:\n  learning_rate: 1e-3\n  num_train_epochs: 1\n  learning_rate: 1e-5\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    line = one_line(exc)
    assert "'learning_rate' is given twice (lines 2 and 4)" in line


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, "trian:\n  lora_rank: 8\n"))
    assert "did you mean 'train'" in one_line(exc)


def test_wrong_type_and_range_collected(tmp_path):
    path = write(tmp_path, "train:\n  learning_rate: fast\ncurate:\n  threshold: 1.5\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    line = one_line(exc)
    assert "2 problems" in line
    assert "train.learning_rate must be a number, got 'fast'" in line
    assert "curate.threshold must be between 0.0 and 1.0, got 1.5" in line


def test_bool_is_not_an_int(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, "train:\n  lora_rank: true\n"))
    assert "must be an integer" in one_line(exc)


def test_choice(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, "train:\n  backend: cuda\n"))
    assert "must be one of auto, mlx, peft" in one_line(exc)


def test_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, "train: [1, 2\n"))
    assert "invalid YAML" in one_line(exc)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "nope.yaml")
    assert "not found" in one_line(exc)


def test_list_item_missing_required_key(tmp_path):
    path = write(tmp_path, "sources:\n  watch:\n    - format: collector\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "sources.watch[0]: missing required key(s) path" in one_line(exc)


def test_overrides_win(tmp_path):
    cfg = load_config(write(tmp_path, "train:\n  lora_rank: 4\n"))
    cfg = with_overrides(cfg, "train", lora_rank=16, max_steps=None)
    assert cfg.train.lora_rank == 16 and cfg.train.max_steps is None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("train:\n  lora_rnak: 8\n", "unknown key"),
        ("train:\n  learning_rate: fast\n", "must be a number"),
        ("train: [1, 2\n", "invalid YAML"),
    ],
)
def test_bad_config_at_cli_is_exit_2_one_line(cli, tmp_path, text, needle):
    path = write(tmp_path, text)
    code, _out, err = cli.main("train", "--config", str(path))
    assert code == 2
    assert needle in err
    assert err.strip().count("\n") == 0 and "Traceback" not in err


def test_missing_config_at_cli(cli, tmp_path):
    code, _out, err = cli.main("train", "--config", str(tmp_path / "missing.yaml"))
    assert code == 2 and "config file not found" in err


def test_invalid_category_regex_fails_at_load(tmp_path):
    path = write(tmp_path, "curate:\n  categories:\n    sql: ['re:select (']\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    line = one_line(exc)
    assert str(path) in line and "curate.categories.sql[0]: invalid regex" in line


def test_empty_config_file_is_an_error(tmp_path):
    for text in ("", "\n\n", "# only a comment\n"):
        with pytest.raises(ConfigError) as exc:
            load_config(write(tmp_path, text))
        assert "the config file is empty" in one_line(exc)


def test_section_rules_name_file_and_line(tmp_path):
    path = write(
        tmp_path,
        "curate:\n"
        "  threshold: 0.8\n"
        "  categories:\n"
        "    sql: ['re:select (']\n"
        "  score_rules:\n"
        "    tool_eror: -0.1\n"
        "  secret_patterns:\n"
        "    mine: '[a-'\n"
        "  category_caps:\n"
        "    sql: -1\n",
    )
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    line = one_line(exc)
    assert line.startswith(f"{path}: 4 problems")
    assert "line 3: curate.categories.sql[0]: invalid regex 'select ('" in line
    assert "line 5: curate.score_rules.tool_eror: unknown rule" in line
    assert "line 7: curate.secret_patterns.mine: invalid regex '[a-'" in line
    assert "line 9: curate.category_caps.sql must be >= 0, got -1" in line


def test_config_imports_no_stage():
    """Each section validates its own rules: config.py imports no pipeline stage."""
    import ast

    tree = ast.parse((REPO / "mlx_rsi" / "config.py").read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    stages = (
        "mlx_rsi.curate",
        "mlx_rsi.ingest",
        "mlx_rsi.synth",
        "mlx_rsi.dataset",
        "mlx_rsi.cycle",
    )
    assert not [m for m in imported if m.startswith(stages)]
