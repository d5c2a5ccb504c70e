"""Write the bench corpus (scripts/quality_corpus/logs/) from topics.py, deterministically.

Four log formats, as a person's machine would hold them:
- the seed collector's ``interactions.jsonl`` (explicit ``metadata.success``),
- Claude Code project transcripts (no feedback; corrections typed in the next turn),
- a ChatGPT ``conversations.json`` export with ``message_feedback.json`` thumbs,
- OpenAI chat JSONL (one conversation per line, no signals).
Each accepted answer appears once under its own request and once more under a
rephrased request in another format (people ask again), so the logs hold repeats.

    python scripts/quality_corpus/build_corpus.py   # rewrites scripts/quality_corpus/logs/
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from topics import BAD, GOOD  # noqa: E402

OUT = HERE / "logs"
REPHRASE = (
    ("How do I ", "What's the way to "),
    ("Where ", "Remind me where "),
    ("What's ", "What is "),
    ("Can I ", "Is it ok to "),
    ("Why ", "Any idea why "),
)


def rephrase(request: str) -> str:
    for old, new in REPHRASE:
        if request.startswith(old):
            return new + request[len(old) :]
    return f"Quick one: {request[0].lower()}{request[1:]}"


def stamp(day: int, minute: int) -> str:
    return f"2026-10-{day:02d}T{9 + minute // 60:02d}:{minute % 60:02d}:00Z"


def write_collector(topic: str, day: int, turns: list[tuple[str, str, bool]]) -> None:
    folder = OUT / "collector" / f"{topic}-day{day}"
    folder.mkdir(parents=True)
    lines = [
        json.dumps(
            {"timestamp": stamp(day, 5 * n), "user": q, "assistant": a, "metadata": {"success": ok}}
        )
        for n, (q, a, ok) in enumerate(turns)
    ]
    (folder / "interactions.jsonl").write_text("\n".join(lines) + "\n")


def write_claude(topic: str, day: int, turns: list[tuple[str, str]]) -> None:
    session = f"{topic}-{day:02d}-0000-4000-8000-000000000000"
    folder = OUT / "claude" / "-home-dev-tidepool"
    folder.mkdir(parents=True, exist_ok=True)
    lines, parent = [], None
    for n, (q, a) in enumerate(turns):
        base = {
            "isSidechain": False,
            "cwd": "/home/dev/tidepool",
            "sessionId": session,
            "version": "2.0.1",
            "gitBranch": "main",
        }
        uid, aid = f"{session}-u{n}", f"{session}-a{n}"
        lines.append(
            {
                **base,
                "parentUuid": parent,
                "type": "user",
                "uuid": uid,
                "timestamp": stamp(day, 7 * n),
                "message": {"role": "user", "content": q},
            }
        )
        lines.append(
            {
                **base,
                "parentUuid": uid,
                "type": "assistant",
                "uuid": aid,
                "timestamp": stamp(day, 7 * n + 1),
                "requestId": f"req-{aid}",
                "message": {
                    "id": f"msg-{aid}",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4",
                    "content": [{"type": "text", "text": a}],
                    "stop_reason": "end_turn",
                },
            }
        )
        parent = aid
    (folder / f"{session}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def chatgpt_conversation(cid: str, day: int, turns: list[tuple[str, str]]) -> dict:
    mapping = {"root": {"id": "root", "message": None, "parent": None, "children": []}}
    parent = "root"
    for n, (q, a) in enumerate(turns):
        for role, text, mid in (("user", q, f"{cid}-u{n}"), ("assistant", a, f"{cid}-a{n}")):
            mapping[parent]["children"].append(mid)
            mapping[mid] = {
                "id": mid,
                "parent": parent,
                "children": [],
                "message": {
                    "id": mid,
                    "author": {"role": role},
                    "create_time": 1790000000.0 + day * 86400 + n,
                    "content": {"content_type": "text", "parts": [text]},
                    "metadata": {},
                    "recipient": "all",
                },
            }
            parent = mid
    return {
        "id": cid,
        "conversation_id": cid,
        "title": cid,
        "create_time": 1790000000.0 + day,
        "update_time": 1790000000.0 + day + 600,
        "mapping": mapping,
        "current_node": parent,
    }


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    bad_by_topic: dict[str, list[tuple[str, str, str | None]]] = {}
    for topic, q, a, correction in BAD:
        bad_by_topic.setdefault(topic, []).append((q, a, correction))
    conversations, feedback, openai_lines = [], [], []
    for day, (topic, items) in enumerate(sorted(GOOD.items()), start=1):
        half = (len(items) + 1) // 2
        first, second = items[:half], items[half:]
        bad = bad_by_topic.get(topic, [])
        marked = [(q, a, False) for q, a, c in bad if c is None]
        write_collector(topic, day, [(q, a, True) for q, a in first] + marked)
        corrected = [(q, a, c) for q, a, c in bad if c is not None]
        claude_turns: list[tuple[str, str]] = []
        for n, (q, a) in enumerate(second):
            if n < len(corrected):  # a wrong answer, the person's correction, then the right one
                cq, ca, cc = corrected[n]
                claude_turns += [(cq, ca), (f"{cc}. {q}", a)]
            else:
                claude_turns.append((q, a))
        write_claude(topic, day, claude_turns)
        repeats = [(rephrase(q), a) for q, a in first]
        cid = f"conv-{topic}"
        conversations.append(chatgpt_conversation(cid, day, repeats[:2]))
        feedback.append({"conversation_id": cid, "message_id": f"{cid}-a1", "rating": "thumbsup"})
        for q, a in repeats[2:] + [(rephrase(q), a) for q, a in second]:
            openai_lines.append(
                {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            )
    (OUT / "chatgpt").mkdir()
    (OUT / "chatgpt" / "conversations.json").write_text(json.dumps(conversations, indent=1))
    (OUT / "chatgpt" / "message_feedback.json").write_text(json.dumps(feedback, indent=1))
    (OUT / "openai").mkdir()
    (OUT / "openai" / "chats.jsonl").write_text("".join(json.dumps(x) + "\n" for x in openai_lines))


if __name__ == "__main__":
    main()
