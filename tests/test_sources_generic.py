"""Fine-tuning datasets: OpenAI chat, ShareGPT, Alpaca, mlx-lm completions (JSONL and arrays)."""

from __future__ import annotations

import json

from test_sources_common import GENERIC, row

from mlx_rsi.config import Config
from mlx_rsi.ingest import ingest
from mlx_rsi.session_store import load_sessions
from mlx_rsi.sources.alpaca import READER as ALPACA
from mlx_rsi.sources.completions import READER as COMPLETIONS
from mlx_rsi.sources.openai import READER as OPENAI
from mlx_rsi.sources.sharegpt import READER as SHAREGPT
from mlx_rsi.workspace import Workspace


def test_openai_chat_tool_calls_weights_and_bad_lines():
    result = OPENAI.read(GENERIC / "openai_chat.jsonl")
    assert result.skipped == {"not_an_object": 1, "unknown_schema": 1}
    first, second = result.sessions
    assert [row(m) for m in first.messages] == [
        ("0:0", "system", True, "You are terse.", [], None, False, []),
        ("0:1", "user", True, "Weather in Paris?", [], None, False, []),
        ("0:2", "assistant", True, "", [("call_w1", "get_weather")], None, False, []),
        ("0:3", "tool", True, "18C, cloudy", [], "call_w1", False, []),
        ("0:4", "assistant", True, "18C and cloudy.", [], None, False, []),
    ]
    assert first.messages[2].tool_calls[0].arguments == {"city": "Paris"}
    assert first.metadata["tools"][0]["function"]["name"] == "get_weather"
    assert [(m.text, m.weight) for m in second.messages] == [
        ("Describe this\n<IMAGE>", None),
        ("A draft answer", 0.0),
        ("shorter", None),
        ("A red square.", None),
    ]
    data = (GENERIC / "openai_chat.jsonl").read_bytes()
    assert second.native_id == str(data.index(b'{"messages": [{"role": "user", "content": [{'))


def test_sharegpt_array_with_function_calls():
    result = SHAREGPT.read(GENERIC / "sharegpt.json")
    assert result.replace and result.skipped == {"unknown_schema": 1}
    first, second = result.sessions
    assert [row(m) for m in first.messages] == [
        ("#0:system", "system", True, "You can call tools.", [], None, False, []),
        ("#0:0", "user", True, "Who wrote Dune?", [], None, False, []),
        ("#0:1", "assistant", True, "", [("call_1", "search")], None, False, []),
        ("#0:2", "tool", True, "Frank Herbert", [], "call_1", False, []),
        ("#0:3", "assistant", True, "Frank Herbert wrote Dune.", [], None, False, []),
    ]
    assert first.messages[2].tool_calls[0].arguments == {"q": "Dune author"}
    assert [m.text for m in second.messages] == ["hi", "Hello!"]


def test_alpaca_with_input_and_history():
    result = ALPACA.read(GENERIC / "alpaca.jsonl")
    assert result.skipped == {"unknown_schema": 1}
    first, second = result.sessions
    assert [(m.role, m.text) for m in first.messages] == [
        ("system", "You translate."),
        ("user", "Translate to French\n\nGood morning"),
        ("assistant", "Bonjour"),
    ]
    assert [(m.role, m.text) for m in second.messages] == [
        ("user", "Translate 'hello' to French"),
        ("assistant", "Bonjour"),
        ("user", "And 'thanks'?"),
        ("assistant", "Merci"),
        ("user", "And now 'good night'?"),
        ("assistant", "Bonne nuit"),
    ]


def test_alpaca_json_array(tmp_path):
    path = tmp_path / "alpaca_data.json"
    path.write_text(json.dumps([{"instruction": "Say hi", "input": "", "output": "hi"}], indent=2))
    (session,) = ALPACA.read(path).sessions
    assert [m.text for m in session.messages] == ["Say hi", "hi"]


def test_completions_and_bare_text():
    result = COMPLETIONS.read(GENERIC / "completions.jsonl")
    assert result.skipped == {"unknown_schema": 1}
    assert [m.text for m in result.sessions[0].messages] == ["2+2=", "4"]


def test_dataset_lines_append_one_session_each(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.create()
    path = tmp_path / "data.jsonl"
    line = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path.write_text(json.dumps(line) + "\n")
    assert ingest(ws, Config(), [path]).new_sessions == 1
    with path.open("a") as handle:
        handle.write(json.dumps(line) + "\n")
    again = ingest(ws, Config(), [path])
    assert (again.new_sessions, again.new_messages) == (1, 2)
    with ws.store() as conn:
        assert len(list(load_sessions(conn))) == 2
