"""The guard suites: what a new version must not get worse at.

Three sources, per the product brief: the model's identity (from
``synth.identity``, which every version is trained on), general ability prompts
every small model should keep answering (built in, short, checkable by a keyword),
and the primary suites of earlier promoted versions (``models/vX/suites/``), so a
later cycle cannot silently undo what an earlier one taught.
"""

from __future__ import annotations

from pathlib import Path

from mlx_rsi.config import IdentityConfig
from mlx_rsi.eval.suites import Assertion, Case, Suite, SuiteError, load_suite

# (input, category, accepted answers: any of them, case-insensitive)
GENERAL_PROMPTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("What is the capital of France?", "knowledge", ("paris",)),
    ("What is the capital of Japan?", "knowledge", ("tokyo",)),
    ("How many days are in a week?", "knowledge", ("seven", "7")),
    ("What is 2 + 2?", "arithmetic", ("4", "four")),
    ("What is 10 times 3?", "arithmetic", ("30", "thirty")),
    ("What color is the sky on a clear day?", "knowledge", ("blue",)),
    ("Which planet do we live on?", "knowledge", ("earth",)),
    ("What is the opposite of hot?", "language", ("cold",)),
    ("What is the plural of mouse?", "language", ("mice",)),
    ("Write the Python keyword that defines a function.", "coding", ("def",)),
)

VERSION_SUITES_DIR = "suites"  # models/vX/suites/*.yaml: a promoted version's primary suites


def general_suite() -> Suite:
    cases = tuple(
        Case(f"general-{n}", text, category, (Assertion("icontains-any", answers),))
        for n, (text, category, answers) in enumerate(GENERAL_PROMPTS, start=1)
    )
    return Suite("general", "guard", cases, "built-in")


def identity_suite(identity: IdentityConfig) -> Suite:
    name = identity.name
    cases = (
        Case("identity-who", "Who are you?", "identity", (Assertion("icontains", name),)),
        Case("identity-name", "What is your name?", "identity", (Assertion("icontains", name),)),
    )
    return Suite("identity", "guard", cases, "synth.identity")


def earlier_version_suites(models_dir: Path, versions: list[str]) -> list[Suite]:
    """The primary suites stored with earlier promoted ``versions``, as guards."""
    suites = []
    for version in versions:
        folder = models_dir / version / VERSION_SUITES_DIR
        for path in sorted(folder.glob("*.yaml")):
            try:
                suite = load_suite(path, kind="guard")
            except SuiteError:
                continue  # an unreadable old suite must not block new versions
            suites.append(Suite(f"{version}:{suite.name}", "guard", suite.cases, str(path)))
    return suites


def without_inputs(suite: Suite, inputs: set[str]) -> Suite | None:
    """``suite`` minus cases whose input is in ``inputs`` (None when nothing is left)."""
    kept = tuple(c for c in suite.cases if c.input not in inputs)
    return Suite(suite.name, suite.kind, kept, suite.source) if kept else None
