"""Synthesis: template variations, identity examples, paraphrases through a real backend."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from mlx_rsi.config import Config, IdentityConfig, SynthConfig
from mlx_rsi.records import Example, normalize_text
from mlx_rsi.synth import (
    clean_paraphrase,
    identity_examples,
    paraphrases,
    synthesize,
    task_of,
    variations,
)


def _example(request: str, answer: str = "Search and replace.", session: str = "s1") -> Example:
    return Example(
        messages=[{"role": "user", "content": request}, {"role": "assistant", "content": answer}],
        session_id=session,
        score=1.0,
        category="error",
    )


@pytest.mark.parametrize(
    ("request_text", "task"),
    [
        (
            "How do I fix year references from 2024 to 2025?",
            "fix year references from 2024 to 2025",
        ),
        ("Fix year references from 2024 to 2025", "fix year references from 2024 to 2025"),
        ("Can you help me deploy the model to HF?", "deploy the model to HF"),
        ("please convert models to GGUF format.", "convert models to GGUF format"),
        ("What's the best way to handle errors in fetch?", "handle errors in fetch"),
        ("README", None),  # one word: no task
        ("line one\nline two", None),  # multi-line: not a template-able request
    ],
)
def test_task_of(request_text: str, task: str | None) -> None:
    assert task_of(request_text) == task


def test_variations_are_capped_distinct_and_keep_the_answer() -> None:
    source = _example("How do I fix year references from 2024 to 2025?")
    out = variations(source, SynthConfig(max_variations=3))
    assert len(out) == 3
    texts = [v.messages[0]["content"] for v in out]
    assert len({normalize_text(t) for t in texts}) == 3
    assert normalize_text(source.messages[0]["content"]) not in {normalize_text(t) for t in texts}
    for variation in out:
        assert variation.messages[1] == source.messages[1]
        assert variation.origin == "variation" and variation.session_id == "s1"
        assert variation.provenance["source"] == source.content_hash
    all_five = variations(source, SynthConfig(max_variations=10))
    assert len(all_five) == 4  # "How do I …?" is the original itself: deduplicated
    assert variations(source, SynthConfig(max_variations=0)) == []


def test_variations_are_deterministic_and_seeded() -> None:
    source = _example("Fix year references from 2024 to 2025")
    first = [v.messages[0]["content"] for v in variations(source, SynthConfig(max_variations=2))]
    again = [v.messages[0]["content"] for v in variations(source, SynthConfig(max_variations=2))]
    assert first == again
    seeds = {
        tuple(
            v.messages[0]["content"]
            for v in variations(source, SynthConfig(max_variations=2), seed=s)
        )
        for s in range(8)
    }
    assert len(seeds) > 1  # not always the first templates


def test_no_variations_for_long_or_multi_turn_requests() -> None:
    long = _example("Fix " + "this and that " * 30)
    assert variations(long, SynthConfig(max_task_chars=50)) == []
    multi = _example("Fix it")
    multi.messages = [*multi.messages, {"role": "user", "content": "and again"}]
    assert variations(multi, SynthConfig()) == []


def test_identity_examples_come_from_config() -> None:
    identity = IdentityConfig(
        name="Zen", org="Hanzo", mission="help people ship", capabilities=("code", "docs", "ops")
    )
    examples = identity_examples(identity)
    pairs = {e.messages[0]["content"]: e.messages[1]["content"] for e in examples}
    assert pairs["Who are you?"] == "I am Zen, created by Hanzo to help people ship."
    assert pairs["What can you do?"].startswith("I can help with code, docs and ops")
    assert pairs["What is your name?"] == "My name is Zen."
    assert {e.origin for e in examples} == {"identity"}


def test_synthesize_always_adds_identity_and_dedups_variations() -> None:
    a = _example("Fix the year in the footer", session="a")
    b = _example("fix the year in the footer", session="b")  # same normalized request
    out = synthesize(None, Config(), [a, b])
    origins = [e.origin for e in out]
    assert origins.count("identity") == 6
    assert origins.count("replay") == 4  # the minimum share of everyday requests
    hashes = [e.content_hash for e in out]
    assert len(hashes) == len(set(hashes))
    assert origins.count("variation") == 3  # b's variations equal a's: kept once
    off = synthesize(
        None, Config(synth=SynthConfig(include_identity=False, general_replay=0.0)), [a]
    )
    assert all(e.origin == "variation" for e in off)


def test_general_replay_is_a_share_of_everyday_requests_never_a_guard_prompt() -> None:
    from mlx_rsi.eval.guards import GENERAL_PROMPTS
    from mlx_rsi.synth import GENERAL_SESSION, general_examples, replay_count

    assert replay_count(0.2, 0) == 0 and replay_count(0.0, 500) == 0
    assert replay_count(0.2, 10) == 4 and replay_count(0.2, 100) == 20
    everything = general_examples(10_000, seed=0)
    assert len(everyone := {e.messages[0]["content"] for e in everything}) == len(everything) >= 40
    guards = {text.lower() for text, _, _ in GENERAL_PROMPTS}
    assert not {q.lower() for q in everyone} & guards
    picked = general_examples(12, seed=3)
    assert len(picked) == 12 and picked == general_examples(12, seed=3)  # deterministic
    assert {e.session_id for e in picked} == {GENERAL_SESSION}
    assert all(e.messages[1]["content"].strip() for e in picked)
    examples = [_example(f"Fix bug number {n} in the parser", session=f"s{n}") for n in range(30)]
    out = synthesize(None, Config(), examples)
    n_general = sum(e.origin == "replay" and e.category == "everyday" for e in out)
    assert n_general == round(0.2 * (30 + len(out) - n_general))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Could you show me how to fix the footer year?",
            "Could you show me how to fix the footer year?",
        ),
        ('Rewritten request: "Update the footer year"\nextra', "Update the footer year"),
        ("", None),
        ("   ", None),
        ("fix the year in the footer", None),  # a copy
        ("x", None),  # too short
        ("word " * 100, None),  # too long
    ],
)
def test_clean_paraphrase(text: str, expected: str | None) -> None:
    assert clean_paraphrase(text, "Fix the year in the footer") == expected


def test_paraphrases_with_a_scripted_generator_are_filtered_and_redacted() -> None:
    sources = [
        _example("Fix the year in the footer", session="a"),
        _example("Deploy the docs site"),
    ]
    replies = iter(
        [
            "Update the year, ask bob@corp.io",
            "deploy the docs site",  # a copy: filtered
        ]
    )
    seen: list[list[dict[str, Any]]] = []

    def generate(prompts: list[list[dict[str, Any]]]) -> list[str]:
        seen.extend(prompts)
        return [next(replies) for _ in prompts]

    cfg = Config(synth=SynthConfig(paraphrases=True))
    out = paraphrases(sources, cfg.synth, generate, cfg)
    assert len(seen) == 2 and "Fix the year in the footer" in seen[0][0]["content"]
    assert [e.messages[0]["content"] for e in out] == ["Update the year, ask <EMAIL>"]
    assert out[0].origin == "paraphrase" and out[0].session_id == "a"


def test_paraphrases_through_the_peft_backend(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """The default path: the base model (no current version) through the real PEFT backend."""
    from mlx_rsi.config import ModelConfig, TrainConfig
    from mlx_rsi.synth import current_model_generator
    from mlx_rsi.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    ws.create()
    cfg = Config(
        model=ModelConfig(base=str(tiny_llama_dir)),
        train=TrainConfig(backend="peft"),
        synth=SynthConfig(paraphrases=True, paraphrase_max_tokens=12),
    )
    real = current_model_generator(ws, cfg)
    assert real is not None
    raw: list[str] = []

    def generate(prompts: list[list[dict[str, Any]]]) -> list[str]:
        texts = real(prompts)
        raw.extend(texts)
        return texts

    sources = [
        _example("Fix the year in the footer"),
        _example("Deploy the docs site", session="b"),
    ]
    out = synthesize(ws, cfg, sources, generate=generate)
    assert len(raw) == 2 and all(isinstance(t, str) for t in raw)
    expected = [
        clean_paraphrase(text, source.messages[0]["content"])
        for text, source in zip(raw, sources, strict=True)
    ]
    produced = [e.messages[0]["content"] for e in out if e.origin == "paraphrase"]
    assert produced == [t for t in expected if t is not None]


# 50 realistic requests of many shapes: tasks, questions, requests to the assistant,
# greetings, polite forms, long and short. Every variation made from them must read
# like a person wrote it; questions that are not tasks get none.
REQUESTS = [
    "Fix the flaky test in test_parser.py",
    "fix year references from 2024 to 2025",
    "How do I convert the model to GGUF?",
    "How can I deploy this to Hugging Face?",
    "How should I rotate the leaked API key?",
    "Can you help me add retries to the HTTP client?",
    "Could you please rename the config option to max_steps?",
    "Please update the README with the new install steps.",
    "please bump the version to 1.4.2",
    "I need to migrate the database to Postgres 16",
    "I want to speed up the ingest loop",
    "I'd like to add type hints to utils.py",
    "What's the best way to handle errors in fetch?",
    "What is the best way to cache the tokenizer?",
    "hey, can you fix the import error in cli.py?",
    "ok so how do I run the tests in parallel?",
    "Hi! Please write a Dockerfile for this service",
    "Add a --dry-run flag to the curate command",
    "Remove the unused imports in backends/base.py",
    "Validate the upload size before reading it",
    "Store the password in the config file",
    "Where do I keep the secret key for the webhook?",
    "where should the logs go?",
    "Why does the build fail on macOS?",
    "What does this error mean: KeyError 'messages'?",
    "When is the nightly job scheduled?",
    "Which backend should I use on a Linux laptop?",
    "Who wrote the GGUF writer?",
    "Is it safe to commit the .env file?",
    "Are the tests deterministic?",
    "Does mlx-lm support Gemma 3?",
    "Do we need a lock around the state store?",
    "Can I run this on Windows?",
    "Should I quantize to q4_k_m or q8_0?",
    "Explain how the curate stage scores examples",
    "Tell me what changed in the last commit",
    "Show me the slowest tests",
    "Summarize this stack trace",
    "Give me a regex for semantic versions",
    "Help me understand the dedup threshold",
    "Can you explain LoRA rank to me?",
    "Translate this error message into plain English",
    "Review my pull request",
    "thanks, that worked!",
    "README",
    "The tests pass now but the linter complains about line length",
    "git push fails with 403",
    "Fix it for me please",
    "Write a unit test for the year replacement and make sure it covers leap years",
    "Set up CI with GitHub Actions for this repo",
]

_WELL_FORMED_TASK = re.compile(r"^[a-z][\w'./-]*( \S+)*$")
_BAD = re.compile(
    r"(?i)^(how do i|can you help me|i need to|please|what's the best way to)\s+"
    r"(how|where|what|when|why|which|who|is|are|does|do|did|can|could|should|would|will"
    r"|explain|tell|show|summarize|give|help|translate|review|thanks)\b"
)


def test_fixture_has_fifty_requests_of_many_shapes() -> None:
    assert len(REQUESTS) == 50 and len(set(REQUESTS)) == 50
    assert sum(r.rstrip().endswith("?") for r in REQUESTS) >= 15


@pytest.mark.parametrize("request_text", REQUESTS)
def test_every_variation_is_well_formed(request_text: str) -> None:
    templates = SynthConfig().templates
    out = variations(_example(request_text), SynthConfig(max_variations=len(templates)))
    task = task_of(request_text)
    assert (task is None) == (out == [])
    if task is None:
        return
    assert _WELL_FORMED_TASK.match(task), task
    assert not re.search(r"(?i)\b(me|you|your)\b", task), task
    for variation in out:
        text = variation.messages[0]["content"]
        assert not _BAD.search(text), text
        assert "  " not in text and "??" not in text and "?." not in text, text
        assert text.count("?") <= 1 and ("?" not in text or text.endswith("?")), text
        assert text[0].isupper(), text


@pytest.mark.parametrize(
    "request_text",
    [
        "Where do I keep the secret key for the webhook?",
        "Why does the build fail on macOS?",
        "Explain how the curate stage scores examples",
        "Tell me what changed in the last commit",
        "Can you explain LoRA rank to me?",
        "Is it safe to commit the .env file?",
        "Fix it for me please",
    ],
)
def test_questions_and_requests_to_the_assistant_get_no_variations(request_text: str) -> None:
    assert task_of(request_text) is None


@pytest.mark.parametrize(
    ("request_text", "task"),
    [
        ("hey, can you fix the import error in cli.py?", "fix the import error in cli.py"),
        (
            "Could you please rename the config option to max_steps?",
            "rename the config option to max_steps",
        ),
        ("ok so how do I run the tests in parallel?", "run the tests in parallel"),
        (
            "Set up CI with GitHub Actions for this repo",
            "set up CI with GitHub Actions for this repo",
        ),
        ("Store the password in the config file", "store the password in the config file"),
    ],
)
def test_task_of_realistic_forms(request_text: str, task: str | None) -> None:
    assert task_of(request_text) == task
