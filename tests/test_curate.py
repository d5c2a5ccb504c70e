"""The curate stage: examples from turns, scores, categories, threshold, dedup, caps, storage."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest

from mlx_rsi.collector import WorkSessionCollector
from mlx_rsi.config import Config, CurateConfig, SynthConfig
from mlx_rsi.curate import (
    apply_caps,
    count_placeholders,
    curate,
    curate_sessions,
    load_examples,
    validate_curate_config,
)
from mlx_rsi.curate.categorize import compile_categories
from mlx_rsi.curate.dedup import dedup_exact, dedup_near
from mlx_rsi.curate.examples import session_examples
from mlx_rsi.curate.score import score_signals
from mlx_rsi.errors import ConfigError
from mlx_rsi.ingest import ingest
from mlx_rsi.records import Example, Message, Session, Signal, ToolCall
from mlx_rsi.workspace import Workspace

NO_SYNTH = SynthConfig(max_variations=0, include_identity=False, general_replay=0.0)


def config(**curate: object) -> Config:
    return Config(curate=CurateConfig(**curate), synth=NO_SYNTH)  # type: ignore[arg-type]


def agent_session() -> Session:
    """A coding-agent session: injected context, tool use, an error, a correction."""
    return Session(
        id="agent1",
        source_format="claude_code",
        path="/logs/a.jsonl",
        messages=[
            Message("user", "<command-name>/init</command-name>", key="0", typed=False),
            Message("user", "Fix the failing test in parser.py", key="1"),
            Message(
                "assistant",
                "Let me look.",
                key="2",
                reasoning="private thoughts",
                tool_calls=[ToolCall("c1", "Read", {"file_path": "parser.py"})],
            ),
            Message("tool", "def parse(x):\n    return x" * 400, key="3", tool_call_id="c1"),
            Message("assistant", "Fixed: the parser now strips spaces.", key="4"),
            Message("user", "Add a docstring to parse", key="5"),
            Message(
                "assistant",
                "Done.",
                key="6",
                signals=[Signal("correction", True, "that's wrong")],
            ),
            Message("user", "that's wrong, use Google style", key="7"),
            Message("assistant", "Rewritten in Google style.", key="8"),
            Message("user", "Now deploy it", key="9"),
            Message("assistant", "", key="10", signals=[Signal("api_error", True)]),
        ],
    )


def test_turns_become_examples_with_tool_calls_and_truncated_results() -> None:
    dropped: Counter[str] = Counter()
    cfg = CurateConfig(max_tool_result_chars=100)
    examples = session_examples(agent_session(), cfg, dropped)
    assert dropped == {"api_error": 1}
    assert len(examples) == 3
    first = examples[0].messages
    assert [m["role"] for m in first] == ["user", "assistant", "tool", "assistant"]
    assert first[0]["content"] == "Fix the failing test in parser.py"  # injected text skipped
    call = first[1]["tool_calls"][0]
    assert call == {
        "id": "c1",
        "type": "function",
        "function": {"name": "Read", "arguments": {"file_path": "parser.py"}},
    }
    assert first[2]["tool_call_id"] == "c1"
    assert (
        first[2]["content"].startswith("def parse") and "more characters cut" in first[2]["content"]
    )
    assert len(first[2]["content"]) < 200
    assert "private thoughts" not in repr(examples)  # reasoning is never trained


def test_a_corrected_answer_becomes_untrained_context_of_the_repair() -> None:
    examples = session_examples(agent_session(), CurateConfig(), Counter())
    repair = examples[2].messages
    assert [m["role"] for m in repair] == ["user", "assistant", "user", "assistant"]
    assert repair[1] == {"role": "assistant", "content": "Done.", "weight": 0}
    assert "weight" not in repair[3]
    # Without a continuing signal, no context unless context_turns asks for it.
    assert len(examples[1].messages) == 2
    wider = session_examples(agent_session(), CurateConfig(context_turns=1), Counter())
    roles = ["user", "assistant", "tool", "assistant", "user", "assistant"]
    assert [m["role"] for m in wider[1].messages] == roles
    tight = session_examples(agent_session(), CurateConfig(max_context_messages=1), Counter())
    assert len(tight[2].messages) == 2  # the context does not fit the budget


@pytest.mark.parametrize(
    ("signals", "expected"),
    [
        ([{"kind": "feedback", "value": True}], 1.0),  # seed: success → 1.0
        ([{"kind": "feedback", "value": False}], 0.5),  # seed: else 0.5
        ([{"kind": "feedback", "value": 0.7}], 0.7),  # a rating
        ([], 0.9),  # nobody complained
        ([{"kind": "tool_success"}], 0.95),
        ([{"kind": "tool_success"}] * 5, 1.0),
        ([{"kind": "tool_error"}], 0.8),
        ([{"kind": "tool_error"}] * 9, 0.6),  # capped at -0.3
        ([{"kind": "rejection", "detail": "no"}], 0.5),
        ([{"kind": "interrupt"}], 0.6),
        ([{"kind": "correction"}], 0.4),
        ([{"kind": "tool_error"}, {"kind": "feedback", "value": True}], 1.0),  # feedback wins
    ],
)
def test_score_rules(signals: list[dict[str, object]], expected: float) -> None:
    assert score_signals(signals, {}) == pytest.approx(expected)


def test_score_rules_are_configurable_and_checked() -> None:
    assert score_signals([{"kind": "feedback", "value": False}], {"feedback_negative": 0.2}) == 0.2
    with pytest.raises(ConfigError, match=r"curate\.score_rules\.tool_eror: unknown rule"):
        validate_curate_config(config(score_rules={"tool_eror": -0.1}))
    with pytest.raises(ConfigError, match=r"curate\.score_rules\.unlabeled must be between 0"):
        validate_curate_config(config(score_rules={"unlabeled": 1.5}))


def test_categories_seed_defaults_keywords_and_regex() -> None:
    seed = compile_categories(CurateConfig().categories)
    assert seed.category("How do I secure API tokens?") == "security"
    assert seed.category("Update the README") == "documentation"
    assert seed.category("Deploy models to HuggingFace") == "deployment"
    assert seed.category("Convert models to GGUF format") == "format"
    assert seed.category("Fix year references from 2024 to 2025") == "error"
    assert seed.category("Add a prefix to names") == "general"  # "fix" only at a word start
    custom = compile_categories({"sql": ("re:\\bselect\\b.+\\bfrom\\b",), "git": ("rebase",)})
    assert custom.category("SELECT name FROM users") == "sql"
    assert custom.category("help me Rebase this branch") == "git"


def test_invalid_rules_are_one_clear_line() -> None:
    bad = config(categories={"sql": ("re:select (",), "ok": ("fine",), "x": ("re:[",)})
    with pytest.raises(ConfigError) as info:
        validate_curate_config(bad)
    line = info.value.one_line()
    assert "\n" not in line
    assert "curate.categories.sql[0]: invalid regex 'select ('" in line
    assert "curate.categories.x[0]: invalid regex '['" in line


def test_bad_config_rules_through_the_cli(cli, workspace_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    Workspace(workspace_dir).create()
    bad_regex = tmp_path / "regex.yaml"
    bad_regex.write_text("curate:\n  categories:\n    sql: ['re:select (']\n")
    code, out, err = cli.main("--config", str(bad_regex), "curate")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "curate.categories.sql[0]: invalid regex" in err
    bad_threshold = tmp_path / "threshold.yaml"
    bad_threshold.write_text("curate:\n  threshold: 1.5\n")
    code, _, err = cli.main("--config", str(bad_threshold), "curate")
    assert code == 2 and err.count("\n") == 1
    assert "curate.threshold must be between 0.0 and 1.0, got 1.5" in err


def _example(request: str, answer: str, score: float, session: str = "s") -> Example:
    return Example(
        messages=[{"role": "user", "content": request}, {"role": "assistant", "content": answer}],
        session_id=session,
        score=score,
    )


ANSWER = (
    "Convert the model with the gguf writer: load the safetensors weights, map the tensor "
    "names with TensorNameMap, write the tokenizer vocabulary with int32 token types, then "
    "quantize to q8_0 and check the output with llama.cpp greedy decoding."
)


def test_near_duplicates_collapse_to_the_best_and_distinct_examples_survive() -> None:
    paraphrased = [
        _example("How do I convert my model to GGUF?", ANSWER, 0.95, "a"),
        _example("How can I convert the model into GGUF?", ANSWER, 1.0, "b"),
        _example("how do i convert my model to gguf format", ANSWER, 0.9, "c"),
    ]
    distinct = [
        _example("How do I secure API tokens?", "Keep them in environment variables.", 1.0),
        _example("Deploy to the Hub", "Use create_repo and upload_folder on HfApi.", 1.0),
    ]
    dropped: Counter[str] = Counter()
    kept = dedup_near(paraphrased + distinct, 0.85, dropped)
    assert dropped == {"near_duplicate": 2}
    assert len(kept) == 3
    survivor = [e for e in kept if ANSWER in e.messages[1]["content"]]
    assert len(survivor) == 1 and survivor[0].session_id == "b"  # the best-scored one
    assert dedup_near(paraphrased, 1.0, Counter()) == paraphrased  # 1.0 = off


def test_exact_duplicates_keep_the_best_score() -> None:
    a = _example("Same  request", "Same answer", 0.9, "a")
    b = _example("same request", "same   answer", 1.0, "b")
    dropped: Counter[str] = Counter()
    assert [e.session_id for e in dedup_exact([a, b], dropped)] == ["b"]
    assert dropped == {"duplicate": 1}


def test_category_caps_keep_the_best() -> None:
    examples = [_example(f"r{i}", f"a{i}", 0.9 + i / 100, "s") for i in range(5)]
    for example in examples:
        example.category = "security"
    dropped: Counter[str] = Counter()
    kept = apply_caps(examples, CurateConfig(category_caps={"security": 2}), dropped)
    assert sorted(e.messages[0]["content"] for e in kept) == ["r3", "r4"]
    assert dropped == {"category_cap": 3}


def test_placeholders_are_counted_per_example() -> None:
    example = _example("token <SECRET:github_token> and <EMAIL>", "<SECRET:github_token>", 1.0)
    assert count_placeholders(example) == {"email": 1, "secret:github_token": 2}


TASKS = [
    ("Fix year references from 2024 to 2025", "Search for 2024 and replace it with 2025."),
    ("Add security validation to API calls", "Check every token before the request is sent."),
    ("Create comprehensive docs for the CLI", "Write one page per command with examples."),
    ("Deploy models to HuggingFace", "Create the repo, then upload the folder."),
    ("Convert models to GGUF format", "Map tensor names and write a q8_0 file."),
    ("Handle the timeout error in fetch", "Wrap the call and retry with backoff."),
    ("Upload the release notes", "Attach the markdown file to the release."),
    ("Rotate the leaked password", "Generate a new one and revoke the old one."),
    ("Convert the notebook to mlx", "Replace torch calls with mlx.core equivalents."),
    ("Update the README badges", "Point the badges at the new CI workflow."),
    ("Fix the flaky date parser", "Parse with an explicit timezone-aware format."),
    ("Write a guide for contributors", "Describe setup, tests and the review process."),
    ("Deploy the docs site", "Build with mkdocs and push to the pages branch."),
    ("Validate user input in the form", "Reject empty names and overlong emails."),
    ("Handle missing config files", "Fall back to defaults and log one warning."),
]


def _collector_sessions(root: Path) -> None:
    for s in range(3):
        collector = WorkSessionCollector(f"session_{s}", root=root)
        for i in range(5):
            request, answer = TASKS[s * 5 + i]
            collector.record(request, answer, {"success": (s + i) % 2 == 0})


def test_curate_end_to_end_from_ingested_collector_sessions(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    ws.create()
    _collector_sessions(ws.sessions_dir)
    cfg = config()
    ingest(ws, cfg, [ws.sessions_dir])

    preview = curate(ws, cfg, dry_run=True)
    conn = ws.store()
    assert load_examples(conn) == []  # a dry run stores nothing
    conn.close()

    result = curate(ws, cfg)
    assert result.sessions == 3 and result.interactions == 15
    assert result.high_quality == 8  # success true: (s + i) even
    assert result.dropped == {"below_threshold": 7}
    assert all(e.score == 1.0 for e in result.examples)
    kept = {e.messages[0]["content"]: e.category for e in result.examples}
    assert kept == {  # success when (session + index) is even; first matching rule wins
        "Fix year references from 2024 to 2025": "error",
        "Create comprehensive docs for the CLI": "documentation",
        "Convert models to GGUF format": "format",
        "Upload the release notes": "deployment",
        "Convert the notebook to mlx": "format",
        "Fix the flaky date parser": "error",
        "Deploy the docs site": "documentation",
        "Handle missing config files": "error",
    }
    assert preview.summary().replace(" (dry run)", "") == result.summary()
    summary = result.summary()
    assert summary.startswith("curate: 15 interactions in 3 sessions → 8 high-quality examples")
    assert "dropped: below_threshold 7" in summary
    conn = ws.store()
    stored = load_examples(conn)
    conn.close()
    assert [e.content_hash for e in stored] == [e.content_hash for e in result.examples]

    # Curating again replaces the stored set (no growth, same content).
    again = curate(ws, dataclasses.replace(cfg, curate=CurateConfig(threshold=0.5)))
    conn = ws.store()
    assert len(load_examples(conn)) == len(again.examples) == 15
    conn.close()


def test_curate_sessions_is_independent_of_session_order() -> None:
    sessions = [agent_session(), agent_session()]
    sessions[1].id = "agent2"
    first = curate_sessions(sessions, config(threshold=0.0))
    second = curate_sessions(list(reversed(sessions)), config(threshold=0.0))
    assert [e.to_dict() for e in first.examples] == [e.to_dict() for e in second.examples]
