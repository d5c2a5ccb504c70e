"""Write examples/demo/batch1/ and batch2/ from content.py, deterministically.

The demo's sessions as a developer's machine would hold them, in five formats:
the seed collector's ``interactions.jsonl`` (``metadata.success``), Claude Code
project transcripts (a tool call whose output holds secrets; corrections typed in
the next turn), Codex CLI rollouts (shell calls, one rejected by the user), Aider's
``.aider.chat.history.md`` (an edit refused with "n") and ShareGPT JSONL.

    python examples/demo/build_sessions.py   # rewrites examples/demo/batch1/ and batch2/
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import content  # noqa: E402
from content import Turn  # noqa: E402

CWD = "/home/maria/src/orca"


def stamp(day: int, minute: int) -> str:
    return f"2026-10-{day:02d}T{9 + minute // 60:02d}:{minute % 60:02d}:00.000Z"


def typed_requests(turns: list[Turn], *, flags: bool = False) -> list[str]:
    """What the person typed before each answer: a correction opens the next request.

    Only the collector records a success flag; elsewhere a failed answer shows as
    the person saying so in the next message.
    """
    requests: list[str] = []
    pending = ""
    for request, _answer, signal in turns:
        requests.append(f"{pending}. {request}" if pending else request)
        if signal == "fail":
            pending = "" if flags else "that didn't work"
        else:
            pending = "" if signal == "ok" else signal
    return requests


def write_collector(out: Path, name: str, day: int, turns: list[Turn]) -> None:
    folder = out / "collector" / name
    folder.mkdir(parents=True)
    rows = [
        {
            "timestamp": stamp(day, 6 * n),
            "user": q,
            "assistant": a,
            "metadata": {"success": signal != "fail", "project": "orca"},
        }
        for n, (q, (_, a, signal)) in enumerate(
            zip(typed_requests(turns, flags=True), turns, strict=True)
        )
    ]
    (folder / "interactions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


class _Claude:
    """Claude Code transcript lines: a parent chain of user / assistant records."""

    def __init__(self, session: str, day: int) -> None:
        self.session, self.day, self.n = session, day, 0
        self.parent: str | None = None
        self.lines: list[dict[str, Any]] = []

    def add(self, kind: str, message: dict[str, Any], **extra: Any) -> None:
        uid = f"{self.session[:8]}-{self.n:04d}-4000-8000-{self.n:012d}"
        self.lines.append(
            {
                "parentUuid": self.parent,
                "isSidechain": False,
                "userType": "external",
                "cwd": CWD,
                "sessionId": self.session,
                "version": "2.0.14",
                "gitBranch": "main",
                "type": kind,
                "message": message,
                "uuid": uid,
                "timestamp": stamp(self.day, 2 * self.n),
                **extra,
            }
        )
        self.parent, self.n = uid, self.n + 1

    def assistant(self, blocks: list[dict[str, Any]], stop: str = "end_turn") -> None:
        message = {
            "id": f"msg_{self.session[:8]}{self.n:04d}",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": blocks,
            "stop_reason": stop,
        }
        self.add("assistant", message, requestId=f"req_{self.session[:8]}{self.n:04d}")


def write_claude(out: Path, name: str, day: int, turns: list[Turn]) -> None:
    session = f"{abs(hash_text(name)) % 16**8:08x}-7c1e-4d2a-9b3f-{day:012d}"
    log = _Claude(session, day)
    for q, (_, answer, _signal) in zip(typed_requests(turns), turns, strict=True):
        log.add("user", {"role": "user", "content": q})
        if answer.startswith("TOOL:"):
            command = {"command": answer[5:], "description": "Show the env file"}
            call = {
                "type": "tool_use",
                "id": f"toolu_{day}{log.n}",
                "name": "Bash",
                "input": command,
            }
            log.assistant([call], stop="tool_use")
            result = {
                "type": "tool_result",
                "tool_use_id": call["id"],
                "content": content.ENV_LOCAL,
            }
            shown = {"stdout": content.ENV_LOCAL, "stderr": "", "interrupted": False}
            log.add("user", {"role": "user", "content": [result]}, toolUseResult=shown)
            answer = content.TOOL_ANSWER
        log.assistant([{"type": "text", "text": answer}])
    folder = out / "claude" / CWD.replace("/", "-")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{session}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in log.lines))


def hash_text(text: str) -> int:
    import hashlib

    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


EXEC = {
    "orcactl db migrate": (content.MIGRATE_OUTPUT, content.MIGRATE_ANSWER),
    "orcactl test --slow": (content.SLOW_OUTPUT, content.SLOW_ANSWER),
    "psql $DATABASE_URL": (content.PSQL_OUTPUT, content.PSQL_ANSWER),
}


def write_codex(out: Path, name: str, day: int, turns: list[Turn]) -> None:
    sid = f"019a{hash_text(name) % 16**4:04x}-{day:04d}-7000-8000-{hash_text(name) % 16**12:012x}"
    lines: list[dict[str, Any]] = []

    def item(minute: int, kind: str, payload: dict[str, Any]) -> None:
        lines.append({"timestamp": stamp(day, minute), "type": kind, "payload": payload})

    item(0, "session_meta", {"id": sid, "timestamp": stamp(day, 0), "cwd": CWD,
                             "originator": "codex_cli_rs", "cli_version": "0.58.0",
                             "git": {"branch": "main"}})  # fmt: skip
    for n, (q, (_, answer, _)) in enumerate(zip(typed_requests(turns), turns, strict=True)):
        minute = 3 * n + 1
        item(minute, "response_item", {"type": "message", "role": "user",
                                       "content": [{"type": "input_text", "text": q}]})  # fmt: skip
        item(minute, "event_msg", {"type": "user_message", "message": q, "images": []})
        if answer.startswith("EXEC:"):
            command = answer[5:]
            output, answer = EXEC[command]
            call_id = f"call_{day}{n}"
            arguments = json.dumps({"command": ["bash", "-lc", command]})
            item(minute, "response_item", {"type": "function_call", "name": "shell",
                                           "arguments": arguments, "call_id": call_id})  # fmt: skip
            item(minute + 1, "response_item", {"type": "function_call_output",
                                               "call_id": call_id, "output": output})  # fmt: skip
        reply = [{"type": "output_text", "text": answer}]
        item(minute + 2, "response_item", {"type": "message", "role": "assistant",
                                           "content": reply})  # fmt: skip
    folder = out / "codex" / "sessions" / "2026" / "10" / f"{day:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rollout-2026-10-{day:02d}T09-00-00-{sid}.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def write_aider(out: Path, name: str, day: int, turns: list[Turn]) -> None:
    parts = [f"\n# aider chat started at 2026-10-{day:02d} 10:00:00\n\n"]
    parts.append("> aider --model sonnet\n> Git repo: .git with 214 files\n\n")
    for q, (_, answer, _) in zip(typed_requests(turns), turns, strict=True):
        parts.append(f"#### {q}\n\n")
        if answer == "ANSWER_NO":
            parts.append(
                'I\'ll add it under [db] in orca.toml:\n\npassword = "Pr0d-Db-Pa55w0rd!"\n\n'
                "> Allow edits to orca.toml which was not previously added to chat? "
                "(Y)es/(N)o [Yes]: n\n\n"
            )
            continue
        parts.append(f"{answer}\n\n")
    folder = out / "aider" / name
    folder.mkdir(parents=True)
    (folder / ".aider.chat.history.md").write_text("".join(parts))


def write_sharegpt(out: Path, name: str, day: int, turns: list[Turn]) -> None:
    conversation = []
    for q, (_, answer, _) in zip(typed_requests(turns), turns, strict=True):
        conversation += [{"from": "human", "value": q}, {"from": "gpt", "value": answer}]
    folder = out / "sharegpt"
    folder.mkdir(parents=True, exist_ok=True)
    record = {"id": f"orca-{name}", "conversations": conversation}
    (folder / f"{name}.jsonl").write_text(json.dumps(record) + "\n")


WRITERS = {
    "collector": write_collector,
    "claude": write_claude,
    "codex": write_codex,
    "aider": write_aider,
    "sharegpt": write_sharegpt,
}


def main() -> None:
    for folder, batch, first_day in (("batch1", content.BATCH1, 5), ("batch2", content.BATCH2, 20)):
        out = HERE / folder
        if out.exists():
            shutil.rmtree(out)
        out.mkdir()
        for n, (fmt, name, turns) in enumerate(batch):
            WRITERS[fmt](out, name, first_day + n, turns)


if __name__ == "__main__":
    main()
