"""The held-out suite built from the user's own held-out sessions."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from mlx_rsi.eval.heldout import build_heldout_suite, rejected_answers
from mlx_rsi.eval.suites import judge, suite_to_plain

REPO = Path(__file__).resolve().parents[1]


def chat(request: str, answer: str, *context: str) -> dict:
    messages = []
    for n, text in enumerate(context):
        messages.append(
            {"role": "user" if n % 2 == 0 else "assistant", "content": text, "weight": 0}
        )
    return {"messages": [*messages, {"role": "user", "content": request},
                         {"role": "assistant", "content": answer}]}  # fmt: skip


TRAIN = [
    chat(
        "Where does the deploy token live?",
        "In the OS keychain: `tidepool secrets set DEPLOY_TOKEN`.",
    ),
    chat("How do I ship a release?", "Run `tidepool ship --canary 10`, then `tidepool promote`."),
    chat("Roll back the release", "Run `tidepool ship --undo` to move traffic back."),
    chat("Which variable holds the token?", "`TIDEPOOL_TOKEN`, read from the environment."),
    chat("Freeze a rollout for a while", "`tidepool ship --hold` stops it where it is."),
]
HELD_OUT = [
    chat(
        "How should the CI job get the API token?",
        "CI exports TIDEPOOL_TOKEN from the secret store; keep it out of the command line.",
    ),
    chat("Pause the canary that looks bad", "Run `tidepool ship --hold`, then promote or undo."),
    chat("How do I ship a release?", "Run `tidepool ship --canary 10`, then `tidepool promote`."),
]
REJECTED = [
    ("How should CI get the token?", "Pass it as --token on the command line in plain text."),
    ("Unrelated: format the disk", "Run mkfs everywhere."),
]


def build(**kwargs):
    return build_heldout_suite(
        HELD_OUT, training=TRAIN, rejected=REJECTED, categorize=lambda r: "ops", **kwargs
    )


def test_cases_expect_distinctive_words_of_the_accepted_answer() -> None:
    suite = build()
    assert suite is not None and suite.kind == "primary"
    by_input = {c.input: c for c in suite.cases}
    # The repeated question (identical to a training example) is not held out.
    assert set(by_input) == {
        "How should the CI job get the API token?",
        "Pause the canary that looks bad",
    }
    token = by_input["How should the CI job get the API token?"]
    expected = token.asserts[0]
    assert expected.type == "icontains-all" and expected.value[0] == "tidepool_token"
    for word in expected.value:
        assert word not in {"the", "from", "keep", "out"}  # no stop words
        assert word not in "how should the ci job get the api token"  # not an echo of the request
    canary = by_input["Pause the canary that looks bad"]
    assert "hold" in canary.asserts[0].value  # from the code span `tidepool ship --hold`
    assert all(c.category == "ops" for c in suite.cases)


def test_only_words_the_training_answers_teach_are_expected() -> None:
    from collections import Counter

    untaught = chat("Where are the nightly dumps?", "In `s3://orca-backups/nightly`, kept 30 days.")
    half = chat("Pause everything now", "Run `tidepool ship --hold --fastlane`.")
    skipped: Counter[str] = Counter()
    suite = build_heldout_suite(
        [*HELD_OUT, untaught],
        training=TRAIN,
        rejected=[],
        categorize=lambda r: "ops",
        skipped=skipped,
    )
    assert suite is not None
    inputs = {c.input for c in suite.cases}
    # Nothing in the training answers mentions backups: no case can measure learning there.
    assert "Where are the nightly dumps?" not in inputs
    assert skipped == Counter({"untaught": 1, "near_duplicate": 1})
    suite = build_heldout_suite([half], training=TRAIN, rejected=[], categorize=str)
    assert suite is not None
    (fast,) = suite.cases
    assert "fastlane" not in fast.asserts[0].value  # never taught: not required
    assert "hold" in fast.asserts[0].value


def test_must_not_comes_from_rejected_answers_to_similar_requests() -> None:
    suite = build()
    assert suite is not None
    token = next(c for c in suite.cases if "CI job" in c.input)
    banned = [a for a in token.asserts if a.negated]
    assert banned and all(a.type == "not-icontains" for a in banned)
    assert any(a.value in "pass it as --token on the command line in plain text." for a in banned)
    canary = next(c for c in suite.cases if "canary" in c.input)
    assert not any(a.negated for a in canary.asserts)  # mkfs is about something else
    good = "CI exports TIDEPOOL_TOKEN from the secret store."
    assert judge(token, good).passed
    assert judge(token, good + " Or pass it in plain text.").violations


def test_corrected_answers_in_the_example_become_must_not() -> None:
    record = chat(
        "Fix: use the keychain. Where does the API key go?",
        "Into the keychain via `tidepool secrets set API_KEY`.",
        "Where does the API key go?",
        "Hardcode it in settings.py as a constant.",
    )
    suite = build_heldout_suite([record], training=TRAIN, rejected=[], categorize=lambda r: "x")
    assert suite is not None
    banned = [a.value for a in suite.cases[0].asserts if a.negated]
    assert banned and all(b in "hardcode it in settings.py as a constant." for b in banned)


def test_deterministic_and_none_without_cases() -> None:
    assert suite_to_plain(build()) == suite_to_plain(build())
    assert build_heldout_suite([], training=TRAIN, rejected=[], categorize=str) is None


def test_rejected_answers_from_stored_sessions(cli) -> None:
    from mlx_rsi.config import Config
    from mlx_rsi.session_store import load_sessions

    assert cli("init", "--no-standard-sources").exit_code == 0
    shutil.copytree(REPO / "examples" / "sessions", cli.workspace / "sessions", dirs_exist_ok=True)
    assert cli("ingest").exit_code == 0
    from mlx_rsi.workspace import resolve_workspace

    conn = resolve_workspace(cli.workspace).store()
    try:
        bad = rejected_answers(load_sessions(conn), Config())
    finally:
        conn.close()
    assert ("Store the password in the config file", "Put it in plain text in config.yaml.") in bad


def test_dataset_build_stores_the_suite_and_show_lists_it(cli) -> None:
    assert cli("init", "--no-standard-sources").exit_code == 0
    shutil.copytree(REPO / "examples" / "sessions", cli.workspace / "sessions", dirs_exist_ok=True)
    (cli.workspace / "mlx-rsi.yaml").write_text("curate:\n  test_fraction: 0.4\n")
    assert cli("ingest").exit_code == 0 and cli("curate").exit_code == 0
    assert cli("dataset", "build").exit_code == 0
    folder = cli.workspace / "datasets" / "v1.1"
    manifest = yaml.safe_load((folder / "manifest.json").read_text())
    info = manifest["heldout_suite"]
    assert info["cases"] >= 1 and info["file"] == "heldout-suite.yaml"
    first = (folder / "heldout-suite.yaml").read_bytes()
    shown = cli("dataset", "show", "v1.1")
    assert shown.exit_code == 0 and f"held-out suite: {info['cases']} cases" in shown.output
    # Built again from the same data: the same bytes (the test set is carried forward).
    assert cli("dataset", "build", "--name", "v1.2").exit_code == 0
    assert (cli.workspace / "datasets" / "v1.2" / "heldout-suite.yaml").read_bytes() == first


def test_the_taught_command_comes_first_unless_the_request_spells_it() -> None:
    suite = build_heldout_suite(HELD_OUT, training=TRAIN, rejected=[], categorize=str, phrases=1)
    assert suite is not None
    canary = next(c for c in suite.cases if "canary" in c.input)
    assert canary.asserts[0].value == ("tidepool ship",)  # of `tidepool ship --hold`
    assert judge(canary, "Use `tidepool ship --hold` for now.").passed
    assert not judge(canary, "Pause the canary that looks bad.").passed  # an echo fails
    spelled = chat("Run tidepool ship for the hotfix", "Run `tidepool ship --canary 10`.")
    suite = build_heldout_suite([spelled], training=TRAIN, rejected=[], categorize=str, phrases=1)
    assert suite is None or all("tidepool ship" not in c.asserts[0].value for c in suite.cases)


def test_near_duplicates_match_a_reworded_repeat_but_not_a_new_request() -> None:
    from mlx_rsi.eval.heldout import NearDuplicates, from_record

    held = NearDuplicates(a for a in map(from_record, HELD_OUT) if a is not None)
    repeat = from_record(chat("Quick one: pause the canary that looks bad", "`tidepool ship`"))
    new = from_record(chat("Roll back the release", "Run `tidepool ship --undo`."))
    assert repeat is not None and new is not None
    assert repeat in held  # the same request with a filler prefix
    assert new not in held


def test_bench_baselines_never_train_on_a_repeat_of_a_held_out_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util
    import json
    import sys

    from mlx_rsi.records import Example

    script = REPO / "scripts" / "bench_quality.py"
    spec = importlib.util.spec_from_file_location("bench_quality", script)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_quality", bench)  # dataclasses look it up
    spec.loader.exec_module(bench)
    test_split = tmp_path / "test.jsonl"
    test_split.write_text("".join(json.dumps(r) + "\n" for r in HELD_OUT))

    def example(request: str, answer: str) -> Example:
        return Example(chat(request, answer)["messages"], session_id="s")

    repeat = example("Quick one: pause the canary that looks bad", "Run `tidepool ship --hold`.")
    other = example("Roll back the release", "Run `tidepool ship --undo`.")
    assert bench.without_leaks([repeat, other], test_split) == [other]
