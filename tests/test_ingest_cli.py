"""`mlx-rsi sessions list|show` over ingested fixtures."""

from __future__ import annotations

import pytest
from test_sources_common import CLAUDE, CODEX, copy_fixture


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich tables wrap cells to fit the terminal


def ingested(cli, tmp_path):
    assert cli("init", "--no-standard-sources").exit_code == 0
    copy_fixture(CLAUDE, tmp_path)
    copy_fixture(CODEX, tmp_path)
    result = cli("ingest", str(tmp_path / "logs"))
    assert result.exit_code == 0, result.output
    assert "3 sessions (3 new)" in result.output


def session_ids(cli) -> dict[str, str]:
    from mlx_rsi.session_store import session_summaries
    from mlx_rsi.workspace import Workspace

    with Workspace(cli.workspace).store() as conn:
        return {
            s.source_format + (":side" if s.parent_id else ""): s.id
            for s in session_summaries(conn)
        }


def test_sessions_list_shows_turns_and_signals(cli, tmp_path):
    ingested(cli, tmp_path)
    ids = session_ids(cli)
    result = cli("sessions", "list")
    assert result.exit_code == 0, result.output
    assert "3 sessions" in result.output
    for session_id in ids.values():
        assert session_id[:12] in result.output
    assert "tool_error" in result.output
    only_codex = cli("sessions", "list", "--format", "codex")
    assert "1 sessions" in only_codex.output
    assert ids["codex"][:12] in only_codex.output
    assert ids["claude_code"][:12] not in only_codex.output


def test_sessions_show_by_prefix_with_signals(cli, tmp_path):
    ingested(cli, tmp_path)
    ids = session_ids(cli)
    result = cli("sessions", "show", ids["claude_code"][:6])
    assert result.exit_code == 0, result.output
    out = result.output
    assert ids["claude_code"] in out
    assert "⚑ rejection: use dateutil instead of a regex" in out
    assert "⚑ tool_error: Bash: Exit code 1" in out
    assert "⚑ correction: wrong" in out
    assert "⚑ api_error" in out
    assert "(not typed)" in out
    assert "→ Read(" in out
    assert "← result of toolu_01" in out
    assert "(thinking, 22 chars)" in out


def test_sessions_show_unknown_or_ambiguous_prefix(cli, tmp_path):
    ingested(cli, tmp_path)
    code, _out, err = cli.main("sessions", "show", "zzzz")
    assert code == 2
    assert "no session id starts with 'zzzz'" in err
    code, _out, err = cli.main("sessions", "show", "")
    assert code == 2
    assert "is empty" in err  # an empty prefix would match every session


def test_ingest_of_a_path_that_does_not_exist_is_a_usage_error(cli, tmp_path):
    assert cli("init", "--no-standard-sources").exit_code == 0
    code, _out, err = cli.main("ingest", str(tmp_path / "nowhere"))
    assert code == 2
    assert "does not exist" in err and "Traceback" not in err
