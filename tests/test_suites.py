"""Suite schema, assertion vocabulary, one-line schema errors, guards, collection."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx_rsi.config import Config, EvalConfig
from mlx_rsi.config import TestCase as SeedCase
from mlx_rsi.eval.collect import collect_suites
from mlx_rsi.eval.guards import general_suite, identity_suite
from mlx_rsi.eval.suites import (
    Assertion,
    SuiteError,
    judge,
    load_suite,
    parse_case,
    parse_suite,
    write_suite,
)

ANSWER = "Keep tokens in environment variables; read them with os.environ['API_TOKEN']."


@pytest.mark.parametrize(
    ("kind", "value", "holds"),
    [
        ("contains", "os.environ", True),
        ("contains", "OS.ENVIRON", False),
        ("icontains", "OS.ENVIRON", True),
        ("contains-any", ("nope", "tokens"), True),
        ("contains-any", ("nope", "never"), False),
        ("contains-all", ("tokens", "environment"), True),
        ("contains-all", ("tokens", "keychain"), False),
        ("icontains-all", ("TOKENS", "Environment"), True),
        ("regex", r"os\.environ\[", True),
        ("regex", r"^Never", False),
        ("equals", ANSWER, True),
        ("equals", "Keep tokens", False),
        ("not-contains", "command line", True),
        ("not-icontains", "KEEP", False),
        ("not-regex", r"\d{5}", True),
        ("not-equals", "x", True),
        ("not-contains-any", ("keychain", "argv"), True),
        ("not-contains-all", ("tokens", "environment"), False),
    ],
)
def test_assertion_vocabulary(kind: str, value: str | tuple[str, ...], holds: bool) -> None:
    assert Assertion(kind, value).holds(ANSWER) is holds


def test_seed_form_is_icontains_all_and_must_not_is_a_violation() -> None:
    case = parse_case(
        {"input": "q", "expected": ["Environment", "OS.environ"], "must_not_contain": "argv"},
        "f.yaml",
        1,
    )
    assert case.asserts[0] == Assertion("icontains-all", ("Environment", "OS.environ"))
    assert judge(case, ANSWER).passed
    outcome = judge(case, ANSWER + " or pass it in argv")
    assert not outcome.passed
    assert outcome.violations == ("not-icontains: argv",)


def test_suite_round_trips_through_yaml(tmp_path: Path) -> None:
    raw = {
        "name": "mine",
        "kind": "guard",
        "cases": [
            {"input": "a?", "category": "x", "expected": ["b"]},
            {"id": "two", "input": "c?", "assert": [{"type": "not-regex", "value": "d+"}]},
        ],
    }
    suite = parse_suite(raw, "mine.yaml")
    write_suite(tmp_path / "s.yaml", suite)
    again = load_suite(tmp_path / "s.yaml")
    assert again.cases == suite.cases and again.kind == "guard" and again.name == "mine"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cases:\n  - input: hi\n    expectd: [x]\n", "bad.yaml: case 1: unknown field 'expectd'"),
        ("cases:\n  - expected: [x]\n", "bad.yaml: case 1: field 'input' must be a non-empty"),
        (
            "cases:\n  - id: k\n    input: hi\n    assert: [{type: containz, value: x}]\n",
            "bad.yaml: case k: assert[0]: field 'type' 'containz' is not one of",
        ),
        (
            "cases:\n  - input: hi\n    assert: [{type: regex, value: '('}]\n",
            "bad.yaml: case 1: assert[0]: field 'value' is not a valid regex",
        ),
        (
            "cases:\n  - input: hi\n    assert: [{type: contains-any, value: []}]\n",
            "bad.yaml: case 1: assert[0]: field 'value' must be a string or a non-empty list",
        ),
        ("cases:\n  - input: hi\n", "bad.yaml: case 1: no assertions"),
        ("kind: sideways\ncases: []\n", "bad.yaml: kind must be primary or guard"),
        ("cases: [\n", "bad.yaml: cannot read suite"),
    ],
)
def test_bad_schema_is_one_line_naming_file_case_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    line = info.value.one_line()
    assert "\n" not in line
    assert line.startswith(str(tmp_path / message.split(":")[0]))
    assert message.split(":", 1)[1].strip() in line


def test_bad_suite_from_cli_is_one_line_exit_2(cli, tmp_path: Path) -> None:
    assert cli("init", "--no-standard-sources").exit_code == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("cases:\n  - input: hi\n    expectd: [x]\n")
    code, _out, err = cli.main("eval", "--suite", str(bad))
    assert code == 2
    assert "case 1: unknown field 'expectd'" in err and "Traceback" not in err
    assert err.strip().count("\n") == 0


def test_guards_and_collection(tmp_path: Path) -> None:
    cfg = Config(
        eval=EvalConfig(test_cases=(SeedCase("Who are you?", ("x",)), SeedCase("New q", ("y",))))
    )
    earlier = tmp_path / "models" / "v1.1" / "suites"
    earlier.mkdir(parents=True)
    (earlier / "heldout.yaml").write_text("cases:\n  - input: Old q\n    expected: [z]\n")
    suites = collect_suites(
        cfg, tmp_path, dataset_dir=None, models_dir=tmp_path / "models", earlier_versions=["v1.1"]
    )
    assert [s.name for s in suites.primary] == ["test_cases"]
    names = [s.name for s in suites.guard]
    assert names == ["identity", "general", "v1.1:heldout"]
    identity = next(s for s in suites.guard if s.name == "identity")
    # "Who are you?" is a primary case: the guard keeps only the other identity case.
    assert [c.input for c in identity.cases] == ["What is your name?"]
    assert all(s.kind == "guard" for s in suites.guard)


def test_builtin_guards_judge_sensible_answers() -> None:
    general = general_suite()
    assert len(general.cases) >= 8
    paris = next(c for c in general.cases if "France" in c.input)
    assert judge(paris, "The capital of France is Paris.").passed
    assert not judge(paris, "It is Lyon.").passed
    who = identity_suite(Config().synth.identity).cases[0]
    assert judge(who, "I am my-assistant, created by its owner.").passed
