"""Ingest fidelity on realistic samples: the kept branch, the right signals, every file explained.

One fixture per defect (tests/fixtures/fidelity/), each a format sample written the
way the tool writes it; every test asserts the exact transcript that is stored (after
cleaning and redaction) and the signals on it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_sources_common import ingest_in_steps, ingest_once, line_starts, row

from mlx_rsi.config import Config
from mlx_rsi.curate import curate_sessions
from mlx_rsi.ingest import IngestResult, ingest
from mlx_rsi.records import Message, Session, session_id
from mlx_rsi.session_store import load_sessions, session_summaries
from mlx_rsi.sources import detect_format
from mlx_rsi.sources.clean import strip_ansi
from mlx_rsi.workspace import Workspace

FIDELITY = Path(__file__).parent / "fixtures" / "fidelity"
CC = FIDELITY / "claude_code"
CC_REPORT = CC / "-home-bob-report" / "5d3c9e1a-7b2f-4c6e-9a10-2f4b8c7d1e03.jsonl"
CC_AGENT_DIR = CC_REPORT.with_suffix("") / "subagents"
CC_TOOL = CC / "-home-bob-tool" / "8a7b6c5d-1111-4222-8333-944455556666.jsonl"
CC_SUMMARY_ONLY = CC / "-home-bob-tool" / "0c0c0c0c-2222-4333-8444-955566667777.jsonl"
CC_SNAPSHOT_ONLY = CC / "-home-bob-tool" / "0d0d0d0d-3333-4444-8555-a66677778888.jsonl"
AIDER = FIDELITY / "aider" / ".aider.chat.history.md"
CODEX_LEGACY = FIDELITY / "codex" / "rollout-2025-04-22-6a1f0c2e-93b4-4f7a-b3e2-1d0c9e8f7a65.jsonl"
CODEX_NEW = (
    FIDELITY / "codex" / ("rollout-2025-11-03T08-00-00-019a4b2c-7d8e-7f00-a1b2-c3d4e5f60718.jsonl")
)
CHATGPT = FIDELITY / "chatgpt" / "conversations.json"
CHATGPT_EMPTY = FIDELITY / "chatgpt" / "empty" / "conversations.json"
LLAVA = FIDELITY / "sharegpt" / "llava_mix.jsonl"
ATIF = FIDELITY / "atif" / "copilot-build.trajectory.json"


def stored(tmp_path: Path, *paths: Path) -> tuple[IngestResult, dict[str, Session]]:
    """Ingest ``paths`` into a new workspace: the result and the stored sessions by native id."""
    ws = Workspace(tmp_path / f"ws-{len(list(tmp_path.iterdir()))}")
    ws.create()
    result = ingest(ws, Config(), list(paths))
    with ws.store() as conn:
        return result, {s.native_id: s for s in load_sessions(conn)}


def rows(session: Session, width: int = 48) -> list[tuple[Any, ...]]:
    return [row(m, width) for m in session.messages]


def signals(message: Message) -> list[tuple[str, str]]:
    return [(s.kind, s.detail) for s in message.signals]


# --------------------------------------------------------------------------- 1. Claude branches


def test_claude_kept_transcript_is_the_chain_to_the_last_leaf(tmp_path):
    """2.1.x: an edited prompt whose parent is a turn_duration system record after a
    stop_hook_summary; the abandoned branch has two later turns; tool results hang
    from progress records. Exactly the resumed chain is stored."""
    _, sessions = stored(tmp_path, CC_REPORT)
    main = sessions[CC_REPORT.stem]
    assert main.title is None  # the file's summary is about another session's leaf
    assert rows(main) == [
        ("u1", "user", True, "Add a --json flag to the report command", [], None, False, []),
        (
            "m:msg_A",
            "assistant",
            True,
            "I'll look at the command first.",
            [("toolu_A1", "Bash")],
            None,
            False,
            [],
        ),
        (
            "r:toolu_A1",
            "tool",
            True,
            "Usage: report [OPTIONS]\n  --csv  write CSV",
            [],
            "toolu_A1",
            False,
            [],
        ),
        ("m:msg_B", "assistant", True, "Added `--json` next to `--csv`.", [], None, False, []),
        ("u2b", "user", True, "Print the JSON to stdout instead, no file", [], None, False, []),
        (
            "m:msg_F",
            "assistant",
            True,
            "Printing to stdout now.",
            [("toolu_F1", "Edit")],
            None,
            False,
            [],
        ),
        (
            "r:toolu_F1",
            "tool",
            True,
            "The file report/cli.py has been updated.",
            [],
            "toolu_F1",
            False,
            [],
        ),
        (
            "m:msg_G",
            "assistant",
            True,
            "Done: `report --json` prints to stdout.",
            [],
            None,
            False,
            [],
        ),
        ("u4", "user", True, "thanks, now run the tests", [], None, False, []),
        (
            "m:msg_H",
            "assistant",
            True,
            "",
            [("toolu_H1", "Bash")],
            None,
            False,
            [
                (
                    "tool_error",
                    True,
                    "Bash: FAILED tests/test_report.py::test_json - AssertionError",
                )
            ],
        ),
        (
            "r:toolu_H1",
            "tool",
            True,
            "FAILED tests/test_report.py::test_json - Asserti",
            [],
            "toolu_H1",
            True,
            [],
        ),
        (
            "m:msg_I",
            "assistant",
            True,
            "One test expects the old output; updating it.",
            [],
            None,
            False,
            [],
        ),
        (
            "u5",
            "user",
            False,
            "Stop hook feedback:\n[ruff check .]: report/cli.p",
            [],
            None,
            False,
            [],
        ),
        ("m:msg_J", "assistant", True, "Removed the unused import.", [], None, False, []),
    ]
    text = json.dumps(main.to_dict())
    for abandoned in ("report.json", "Gzipped", "and gzip it"):
        assert abandoned not in text
    assert "\\u001b" not in text  # no ANSI escape in any stored text or signal


def test_claude_chain_is_the_same_read_in_any_number_of_passes(tmp_path):
    data = CC_REPORT.read_bytes()
    once = ingest_once_file(tmp_path, data, CC_REPORT.name)
    assert ingest_in_steps(tmp_path, data, CC_REPORT.name, line_starts(data)) == once
    # the edit arrives in a later pass than the branch it abandons
    edit_at = data.index(b'"uuid": "u2b"')
    cut = data.rindex(b"\n", 0, edit_at) + 1
    assert ingest_in_steps(tmp_path, data, CC_REPORT.name, [cut]) == once


def ingest_once_file(tmp_path: Path, data: bytes, name: str) -> list[Any]:
    target = tmp_path / "logs" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return ingest_once(tmp_path, name)


# --------------------------------------------------------------------------- 2. subagents, titles


def test_claude_inline_task_subagents_are_one_session_per_call(tmp_path):
    _, sessions = stored(tmp_path, CC_TOOL)
    main = sessions[CC_TOOL.stem]
    assert main.title == "Map config loading and CLI commands"  # its own leaf m5
    first = sessions[f"{CC_TOOL.stem}:task:toolu_T1"]
    second = sessions[f"{CC_TOOL.stem}:task:toolu_T2"]
    for side, call, description in (
        (first, "toolu_T1", "Find config loading"),
        (second, "toolu_T2", "List CLI commands"),
    ):
        assert side.parent_id == main.id
        assert side.title is None
        assert side.metadata["tool_call_id"] == call
        assert side.metadata["description"] == description
        assert side.metadata["subagent_type"] == "general-purpose"
    assert rows(first) == [
        (
            "sa1",
            "user",
            False,
            "Find where the config file is loaded and report ",
            [],
            None,
            False,
            [],
        ),
        ("m:msg_s01", "assistant", True, "", [("toolu_sa", "Grep")], None, False, []),
        (
            "r:toolu_sa",
            "tool",
            True,
            "tool/config.py:12:def load_config(path):",
            [],
            "toolu_sa",
            False,
            [],
        ),
        (
            "m:msg_s03",
            "assistant",
            True,
            "The config is loaded by load_config in tool/conf",
            [],
            None,
            False,
            [],
        ),
    ]
    assert [m.key for m in second.messages] == ["sb1", "m:msg_s02", "r:toolu_sb", "m:msg_s04"]
    links = {m.key: m.metadata.get("subagent") for m in main.messages if m.role == "tool"}
    assert links == {"r:toolu_T1": first.id, "r:toolu_T2": second.id}
    assert [m.key for m in main.messages] == [
        "m1",
        "m:msg_01T",
        "r:toolu_T1",
        "r:toolu_T2",
        "m:msg_02T",
    ]


def test_claude_summary_of_another_session_gives_no_title_and_no_session(tmp_path):
    result, sessions = stored(tmp_path, CC_SUMMARY_ONLY, CC_TOOL)
    assert CC_SUMMARY_ONLY.stem not in sessions
    outcome = next(o for o in result.outcomes if o.path == str(CC_SUMMARY_ONLY))
    assert (outcome.status, outcome.format, dict(outcome.skipped)) == (
        "skipped",
        "claude_code",
        {"no_conversation": 1},
    )


def test_claude_agent_file_reads_its_meta_sidecar(tmp_path):
    result, sessions = stored(tmp_path, CC_AGENT_DIR)
    agent = sessions["agent-a4f2e1c"]
    assert agent.metadata["description"] == "Find report tests"
    assert agent.metadata["subagent_type"] == "Explore"
    assert agent.parent_id == session_id("claude_code", str(CC_REPORT), CC_REPORT.stem)
    meta = next(o for o in result.outcomes if o.path.endswith(".meta.json"))
    assert (meta.status, meta.format, meta.note) == (
        "read",
        "claude_code",
        "agent metadata, read with agent-a4f2e1c.jsonl",
    )
    assert not meta.skipped


def test_claude_2x_task_result_links_its_agent_transcript(tmp_path):
    project = tmp_path / "-home-bob-report"
    shutil.copytree(CC_REPORT.parent, project)
    main_path = project / CC_REPORT.name
    last = json.loads(main_path.read_text().splitlines()[-1])

    def line(uuid: str, parent: str, kind: str, content: Any, **extra: Any) -> str:
        record = {**last, "uuid": uuid, "parentUuid": parent, "type": kind}
        record.pop("subtype", None)
        record["message"] = {"role": "user" if kind == "user" else "assistant", "content": content}
        if kind == "assistant":
            record["message"]["id"] = f"msg_{uuid}"
        return json.dumps({**record, **extra}) + "\n"

    call = {"type": "tool_use", "id": "toolu_T9", "name": "Task"}
    call["input"] = {"description": "Find report tests", "prompt": "Find the tests"}
    result = {"type": "tool_result", "tool_use_id": "toolu_T9", "content": "tests/test_report.py"}
    with main_path.open("a") as handle:
        handle.write(line("q1", last["uuid"], "user", "which tests cover report?"))
        handle.write(line("q2", "q1", "assistant", [call]))
        handle.write(
            line(
                "q3",
                "q2",
                "user",
                [result],
                toolUseResult={"agentId": "a4f2e1c", "status": "completed"},
            )
        )
    _, sessions = stored(tmp_path, project)
    main = sessions[CC_REPORT.stem]
    agent = sessions["agent-a4f2e1c"]
    (tool,) = [m for m in main.messages if m.key == "r:toolu_T9"]
    assert tool.metadata == {"subagent": agent.id}
    assert agent.parent_id == main.id


# --------------------------------------------------------------------------- 3. Aider


def test_aider_signals(tmp_path):
    _, sessions = stored(tmp_path, AIDER)
    (session,) = sessions.values()
    by_text = {m.text: m for m in session.messages if m.role == "user"}
    answers = {m.key: signals(m) for m in session.messages if m.role == "assistant" and m.signals}
    # "n" to "Create new file?", "Open URL for more info?", "Install playwright?" is not a
    # rejection; "n" to running the model's shell command is
    assert answers == {
        "o1032": [("rejection", "Run shell command? (Y)es/(N)o/(D)on't ask again [Yes]")],
        "o1576:api": [
            (
                "api_error",
                "litellm.APIConnectionError: AnthropicException - Server disconnected without"
                " sending a response.",
            )
        ],
        "o1727": [("interrupt", "^C again to exit")],
        "o2022": [("interrupt", "^C KeyboardInterrupt")],
    }
    # a retried rate limit is not an error; an API error is never a tool error
    assert not any(m.is_error for m in session.messages)
    # /code with a request is a typed prompt (the request), /add is not
    code = by_text["write tests for it in tests/test_health.py"]
    assert (code.role, code.typed, code.metadata) == ("user", True, {"command": "/code"})
    ask = by_text["what does the blueprint change?"]
    assert (ask.typed, ask.metadata) == (True, {"command": "/ask"})
    add = by_text["/add README.md"]
    assert add.typed is False
    prompts = [m.text for m in session.messages if m.role == "user" and m.typed]
    assert prompts == [
        "add a health check endpoint to app.py",
        "write tests for it in tests/test_health.py",
        "run them",
        "document the endpoint in the README",
        "and add a changelog entry",
        "now refactor the routes into a blueprint",
        "what does the blueprint change?",
        "summarize the diff so far",
    ]


def test_aider_api_error_turn_is_not_an_interaction_answer(tmp_path):
    result, sessions = stored(tmp_path, AIDER)
    (session,) = sessions.values()
    assert (result.new_interactions, result.new_answers) == (8, 7)  # the API error: no answer
    curated = curate_sessions([session], Config())
    assert curated.interactions == 8
    assert curated.dropped["api_error"] == 1


# --------------------------------------------------------------------------- 4. Codex


def test_codex_legacy_rollout_with_crlf(tmp_path):
    assert b"\r\n" in CODEX_LEGACY.read_bytes()
    assert detect_format(CODEX_LEGACY) == "codex"
    result, sessions = stored(tmp_path, CODEX_LEGACY)
    assert result.skipped_totals() == {}
    session = sessions["6a1f0c2e-93b4-4f7a-b3e2-1d0c9e8f7a65"]
    assert session.started_at == "2025-04-22T17:31:06.452Z"
    assert session.project == "<HOME>/api"  # from <environment_context>, home redacted
    assert session.metadata == {"branch": "main"}
    assert rows(session, 40) == [
        ("o239", "user", False, "<environment_context>\nCurrent working di", [], None, False, []),
        ("o485", "user", True, "fix the failing test in tests/test_users", [], None, False, []),
        (
            "o652",
            "assistant",
            True,
            "",
            [("call_A1", "shell")],
            None,
            False,
            [("tool_error", True, "shell: exit code 1")],
        ),
        ("r:call_A1", "tool", True, "F.\n1 failed, 1 passed in 0.12s\n", [], "call_A1", True, []),
        (
            "o1219",
            "assistant",
            True,
            "",
            [("call_A2", "shell")],
            None,
            False,
            [
                (
                    "tool_error",
                    True,
                    "shell: failed in sandbox: rm: cannot remove '.pytest_cache':"
                    " Read-only file system",
                )
            ],
        ),
        (
            "r:call_A2",
            "tool",
            True,
            "failed in sandbox: rm: cannot remove '.p",
            [],
            "call_A2",
            True,
            [],
        ),
        (
            "o1524",
            "assistant",
            True,
            "",
            [("call_A3", "shell")],
            None,
            False,
            [("tool_success", True, "shell")],
        ),
        (
            "r:call_A3",
            "tool",
            True,
            "def test_create_user(client):\n    assert",
            [],
            "call_A3",
            False,
            [],
        ),
        (
            "o1931",
            "assistant",
            True,
            "The endpoint returns 200; the test expec",
            [],
            None,
            False,
            [],
        ),
    ]
    assert session.messages[2].reasoning == "**Running the tests first**"


def test_codex_exit_code_shapes(tmp_path):
    _, sessions = stored(tmp_path, CODEX_NEW)
    (session,) = sessions.values()
    calls = {m.tool_calls[0].id: signals(m) for m in session.messages if m.tool_calls}
    assert calls == {
        "call_B1": [("tool_error", "exec_command: exit code 1")],  # "Process exited with code 1"
        "call_B2": [("tool_success", "shell_command")],  # "Exit code: 0"
    }


# --------------------------------------------------------------------------- 5. ChatGPT


def test_chatgpt_system_error_tool_message_is_a_tool_error(tmp_path):
    _, sessions = stored(tmp_path, CHATGPT)
    (session,) = sessions.values()
    assert rows(session, 40) == [
        ("u1", "user", True, "Plot the monthly totals from sales.csv", [], None, False, []),
        (
            "a1",
            "assistant",
            True,
            "",
            [("a1", "python")],
            None,
            False,
            [("tool_error", True, "python: Encountered exception: <class 'FileNotFoundError'>.")],
        ),
        ("t1", "tool", True, "Encountered exception: <class 'FileNotFo", [], "a1", True, []),
        ("a2", "assistant", True, "I couldn't find sales.csv in the sandbox", [], None, False, []),
        ("u2", "user", True, "Uploaded.", [], None, False, []),
        ("a3", "assistant", True, "", [("a3", "python")], None, False, []),
        ("t2", "tool", True, "month\n2024-01    1200\n2024-02    1350", [], "a3", False, []),
        ("a4", "assistant", True, "January totals 1,200 and February 1,350.", [], None, False, []),
    ]


# ---------------------------------------------------------------------- 6. every file explained


def test_every_file_is_explained(tmp_path):
    result, _ = stored(tmp_path, CC_SUMMARY_ONLY, CC_SNAPSHOT_ONLY, CHATGPT_EMPTY)
    explained = {Path(o.path).name: (o.status, o.format, dict(o.skipped)) for o in result.outcomes}
    assert explained == {
        CC_SUMMARY_ONLY.name: ("skipped", "claude_code", {"no_conversation": 1}),
        CC_SNAPSHOT_ONLY.name: ("skipped", "claude_code", {"no_conversation": 1}),
        "conversations.json": ("skipped", "chatgpt", {"no_conversation": 1}),
    }
    assert result.files_read == 0  # a file without conversation is never "read" for nothing


def test_prompt_logs_beside_the_sessions_are_explained(tmp_path):
    codex_history = FIDELITY / "codex_home" / "history.jsonl"
    gemini_log = FIDELITY / "gemini_tmp" / "logs.json"
    result, sessions = stored(tmp_path, codex_history, gemini_log)
    assert sessions == {}
    explained = {Path(o.path).name: (o.status, o.format, o.note) for o in result.outcomes}
    assert explained == {
        "history.jsonl": (
            "read",
            "codex",
            "Codex prompt history (the prompts are read from the session rollouts)",
        ),
        "logs.json": (
            "read",
            "gemini",
            "Gemini CLI prompt log (the prompts are read from the chat sessions)",
        ),
    }


def test_ingest_verbose_prints_format_and_contents_per_file(cli, tmp_path):
    assert cli("init", "--no-standard-sources").exit_code == 0
    logs = tmp_path / "logs"
    shutil.copytree(CC, logs / "claude")
    shutil.copyfile(CHATGPT_EMPTY, logs / "conversations.json")
    result = cli("ingest", "-v", str(logs))
    assert result.exit_code == 0, result.output
    out = result.output
    report = (logs / "claude" / CC_REPORT.relative_to(CC)).resolve()
    assert (
        f"{report}: claude_code, 1 sessions (1 new), 14 new messages (3 interactions, 7 answers)"
        in out
    )
    assert (
        "agent-a4f2e1c.meta.json: claude_code, agent metadata, read with agent-a4f2e1c.jsonl" in out
    )
    assert f"{CC_SUMMARY_ONLY.name}: claude_code, no conversation; skipped no_conversation 1" in out
    assert "conversations.json: chatgpt, no conversation; skipped no_conversation 1" in out
    assert "unknown_format" not in out


def test_one_vocabulary_for_interactions_across_ingest_sessions_and_curate(cli, tmp_path):
    result, sessions = stored(tmp_path, CC_REPORT)
    ws = Workspace(tmp_path / "ws-0")
    with ws.store() as conn:
        (summary,) = session_summaries(conn)
    curated = curate_sessions(sessions.values(), Config())
    assert result.new_interactions == summary.interactions == curated.interactions == 3
    assert result.new_answers == summary.answers == 7
    assert "3 interactions, 7 answers" in result.summary()


# --------------------------------------------------------------------------- 7. clean text


def test_ansi_escapes_are_removed():
    assert strip_ansi("\x1b[1;31mFAILED\x1b[0m ok") == "FAILED ok"
    assert strip_ansi("\x1b]8;;https://x.dev\x07link\x1b]8;;\x07 \x9b32mgreen") == "link green"
    assert strip_ansi("plain [31m text") == "plain [31m text"


def test_dataset_image_placeholders_are_not_text(tmp_path):
    _, sessions = stored(tmp_path, LLAVA)
    by_offset = sorted(sessions.values(), key=lambda s: int(s.native_id))
    texts = [[m.text for m in s.messages] for s in by_offset]
    assert texts == [
        [
            "<IMAGE>\nWhat are the colors of the bus in the image?",
            "The bus in the image is white and red.",
            "What feature can be seen on the back of the bus?",
            "The back of the bus features an advertisement.",
        ],
        # an SVG question mentions the <image> element: text, not an image
        [
            "Why does my SVG ignore the <image> element's width?",
            "An <image> element needs both width and height in SVG 1.1.",
        ],
        ["Compare these two charts.\n<IMAGE>\n<IMAGE>", "The left chart grows faster."],
    ]


def test_examples_never_end_on_an_unanswered_tool_call():
    session = Session("s", "claude_code", "p")
    session.messages = [
        Message("user", "run the tests"),
        Message("assistant", "Running them.", tool_calls=[]),
        Message("user", "now lint"),
        Message("assistant", "", key="a2"),
        Message("user", "and format"),
        Message("assistant", "Formatting.", key="a3"),
    ]
    from mlx_rsi.records import ToolCall

    session.messages[3].tool_calls = [ToolCall("c1", "Bash", {"command": "ruff check"})]
    session.messages[5].tool_calls = [ToolCall("c2", "Bash", {"command": "ruff format"})]
    result = curate_sessions([session], Config())
    ends = [e.messages[-1] for e in result.examples if e.origin == "session"]
    assert ends == [
        {"role": "assistant", "content": "Running them."},
        {"role": "assistant", "content": "Formatting."},  # its unanswered call is cut
    ]
    assert result.dropped["no_answer"] == 1  # "now lint": its only answer was the call


# --------------------------------------------------------------------------- 8. ATIF


def test_atif_trajectory_with_subagent(tmp_path):
    assert detect_format(ATIF) == "atif"
    result, sessions = stored(tmp_path, ATIF)
    assert result.skipped_totals() == {"copied_context": 1}
    main, sub = sessions["traj-main"], sessions["traj-main/traj-search"]
    assert main.metadata == {
        "schema_version": "ATIF-v1.7",
        "agent": "github-copilot-agent",
        "agent_version": "1.104.0",
        "model": "gpt-5-mini",
        "session_id": "copilot-7f3e2a10",
    }
    assert rows(main, 40) == [
        ("s1", "system", False, "You are a coding agent in VS Code.", [], None, False, []),
        ("s3", "user", True, "Why does the build fail? Screenshot atta", [], None, False, []),
        (
            "s4",
            "assistant",
            True,
            "Let me run the build.",
            [("call_1", "run_in_terminal")],
            None,
            False,
            [
                (
                    "tool_error",
                    True,
                    "run_in_terminal: src/app.ts(3,1): error TS2304: Cannot find name 'helpers'.",
                )
            ],
        ),
        ("s4:r0", "tool", True, "src/app.ts(3,1): error TS2304: Cannot fi", [], "call_1", True, []),
        (
            "s5",
            "assistant",
            True,
            "I'll ask a search agent for the import s",
            [("call_2", "runSubagent")],
            None,
            False,
            [],
        ),
        ("s5:r0", "tool", True, "src/app.ts imports './utils'.", [], "call_2", False, []),
        ("s6", "assistant", True, "src/app.ts still imports './utils'; chan", [], None, False, []),
    ]
    assert main.messages[1].text.endswith("<IMAGE>")
    assert main.messages[2].reasoning == "The screenshot shows a tsc error."
    assert sub.parent_id == main.id
    assert sub.metadata["tool_call_id"] == "call_2"
    assert [(m.role, m.typed, m.text) for m in sub.messages] == [
        ("user", False, "Find imports of helpers"),  # the delegating agent wrote it
        ("assistant", True, "src/app.ts imports './utils'."),
    ]


def test_atif_invalid_steps_are_counted_not_fatal(tmp_path):
    data = json.loads(ATIF.read_text())
    data["steps"][3]["source"] = "robot"  # not an ATIF source: this step alone is dropped
    data["steps"][5]["step_id"] = 9  # out of sequence: the whole document fails validation
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(data))
    result, sessions = stored(tmp_path, path)
    assert result.skipped_totals() == {"invalid_step": 1, "copied_context": 1}
    assert [m.key for m in sessions["traj-main"].messages] == ["s1", "s3", "s5", "s5:r0", "s9"]


@pytest.mark.parametrize("path", [CC_REPORT, CC_TOOL, AIDER, CODEX_LEGACY, CHATGPT, ATIF])
def test_fidelity_fixtures_are_idempotent(path, tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.create()
    ingest(ws, Config(), [path])
    again = ingest(ws, Config(), [path])
    assert (again.files_unchanged, again.new_messages) == (1, 0)
