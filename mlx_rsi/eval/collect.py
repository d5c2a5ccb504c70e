"""Which suites one evaluation runs, and of which kind.

Primary (must improve): the dataset's held-out suite (built from the user's own
held-out sessions), ``eval.test_cases`` (the seed's keyword cases) and the files
in ``eval.suites``; ``mlx-rsi eval --suite FILE`` replaces these with the given
files. Guards (must not regress): identity and general ability prompts
(``eval.builtin_guards``), ``eval.guard_suites`` and the primary suites stored
with earlier promoted versions. A guard case whose input is also a primary case
is left to the primary suites.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlx_rsi.config import Config
from mlx_rsi.eval.guards import (
    earlier_version_suites,
    general_suite,
    identity_suite,
    without_inputs,
)
from mlx_rsi.eval.heldout import HELDOUT_SUITE
from mlx_rsi.eval.suites import Assertion, Case, Suite, SuiteSet, load_suite


def collect_suites(
    cfg: Config,
    root: Path,
    *,
    dataset_dir: Path | None,
    models_dir: Path,
    earlier_versions: Sequence[str] = (),
    explicit: Sequence[Path] = (),
) -> SuiteSet:
    """The suites to run (see the module doc); paths are relative to ``root``."""
    suites = SuiteSet()
    if explicit:
        loaded = [load_suite(_resolve(root, p)) for p in explicit]
    else:
        loaded = _configured_primary(cfg, root, dataset_dir)
    suites.primary = [s for s in loaded if s.kind == "primary"]
    guards = [s for s in loaded if s.kind == "guard"]
    guards += [load_suite(_resolve(root, Path(p)), kind="guard") for p in cfg.eval.guard_suites]
    if cfg.eval.builtin_guards:
        guards += [identity_suite(cfg.synth.identity), general_suite()]
    guards += earlier_version_suites(models_dir, list(earlier_versions))
    inputs = {c.input for s in suites.primary for c in s.cases}
    suites.guard = [g for g in (without_inputs(s, inputs) for s in guards) if g is not None]
    return suites


def _configured_primary(cfg: Config, root: Path, dataset_dir: Path | None) -> list[Suite]:
    loaded = []
    if dataset_dir is not None and (dataset_dir / HELDOUT_SUITE).is_file():
        loaded.append(load_suite(dataset_dir / HELDOUT_SUITE))
    seed = test_cases_suite(cfg)
    if seed is not None:
        loaded.append(seed)
    loaded += [load_suite(_resolve(root, Path(p))) for p in cfg.eval.suites]
    return loaded


def test_cases_suite(cfg: Config) -> Suite | None:
    """``eval.test_cases`` (the seed's form) as a primary suite."""
    cases = []
    for n, tc in enumerate(cfg.eval.test_cases, start=1):
        asserts = [Assertion("icontains-all", tc.expected)] if tc.expected else []
        asserts += [Assertion("not-icontains", p) for p in tc.must_not_contain]
        if asserts:
            cases.append(Case(f"test-case-{n}", tc.input, tc.category, tuple(asserts)))
    return Suite("test_cases", "primary", tuple(cases), "eval.test_cases") if cases else None


def _resolve(root: Path, path: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else root / path
