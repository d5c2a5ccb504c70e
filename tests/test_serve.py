"""`mlx-rsi serve`: a real OpenAI client against the server on a tiny model; records and feedback.

The server runs in-process under uvicorn on a loopback port; the client is the
official `openai` package. Versions are registered directly (training is not what
these tests are about): each points at a tiny model built in-test.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from mlx_rsi.serve.abtest import Router, ab_report, parse_weights
from mlx_rsi.serve.app import ServeState, create_app
from mlx_rsi.serve.engines import load_engine
from mlx_rsi.serve.recorder import Recorder, read_records

openai = pytest.importorskip("openai")


class RunningServer:
    def __init__(self, state: ServeState) -> None:
        config = uvicorn.Config(create_app(state), host="127.0.0.1", port=0, log_level="error")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.state = state

    def __enter__(self) -> RunningServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def engine(tiny_llama_dir: Path):  # type: ignore[no-untyped-def]
    return load_engine("transformers", tiny_llama_dir)


@pytest.fixture
def served(tmp_path: Path, engine) -> Iterator[RunningServer]:  # type: ignore[no-untyped-def]
    state = ServeState(
        engines={"v1.1": engine, "v1.2": engine},
        default_version="v1.2",
        recorder=Recorder(tmp_path / "sessions"),
        model_name="my-assistant",
        max_tokens=8,
        max_prompt_tokens=200,
    )
    with RunningServer(state) as server:
        yield server


def client(server: RunningServer) -> object:
    return openai.OpenAI(base_url=f"{server.base}/v1", api_key="unused", max_retries=0)


def test_openai_client_plain_and_streaming_completions_are_recorded(
    served: RunningServer,
) -> None:
    api = client(served)
    reply = api.chat.completions.create(  # type: ignore[attr-defined]
        model="my-assistant", messages=[{"role": "user", "content": "hello there"}], max_tokens=6
    )
    assert reply.object == "chat.completion"
    assert reply.model == "my-assistant:v1.2"
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage.prompt_tokens > 0
    assert reply.choices[0].finish_reason in ("stop", "length")
    stream = api.chat.completions.create(  # type: ignore[attr-defined]
        model="my-assistant:v1.1",
        messages=[{"role": "user", "content": "stream please"}],
        max_tokens=6,
        stream=True,
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    records = read_records(served.state.recorder.sessions_dir)
    assert [r["user"] for r in records] == ["hello there", "stream please"]
    assert records[0]["assistant"] == reply.choices[0].message.content
    assert records[1]["assistant"] == streamed
    assert records[0]["metadata"]["version"] == "v1.2"
    assert records[1]["metadata"]["version"] == "v1.1"
    assert records[0]["metadata"]["request_id"] == reply.id
    assert records[0]["metadata"]["latency_ms"] > 0
    models = api.models.list()  # type: ignore[attr-defined]
    assert sorted(m.id for m in models.data) == ["my-assistant:v1.1", "my-assistant:v1.2"]


def test_bad_requests_get_openai_style_errors(served: RunningServer) -> None:
    url = f"{served.base}/v1/chat/completions"
    cases = [
        ({"messages": []}, 400),
        ({"messages": [{"role": "wizard", "content": "x"}]}, 400),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 9}, 400),
        ({"messages": [{"role": "user", "content": "x"}], "model": "nope:v9.9"}, 404),
        ({"messages": [{"role": "user", "content": "word " * 400}]}, 413),
    ]
    for body, status in cases:
        response = httpx.post(url, json=body, timeout=60)
        assert response.status_code == status, body
        error = response.json()["error"]
        assert error["message"] and error["type"] == "invalid_request_error"
    assert httpx.post(url, content=b"{not json", timeout=60).status_code == 400
    with pytest.raises(openai.BadRequestError):
        client(served).chat.completions.create(messages=[], model="my-assistant")  # type: ignore[attr-defined]
    assert read_records(served.state.recorder.sessions_dir) == []


def test_feedback_attaches_to_a_recorded_request(served: RunningServer) -> None:
    reply = client(served).chat.completions.create(  # type: ignore[attr-defined]
        model="my-assistant", messages=[{"role": "user", "content": "rate me"}], max_tokens=4
    )
    url = f"{served.base}/v1/feedback"
    ok = httpx.post(url, json={"request_id": reply.id, "rating": "up", "comment": "great"})
    assert ok.status_code == 200 and ok.json()["success"] is True
    missing = httpx.post(url, json={"request_id": "chatcmpl-20200101-000000000000", "rating": "up"})
    assert missing.status_code == 404
    assert httpx.post(url, json={"request_id": reply.id}).status_code == 400
    feedback = [r for r in read_records(served.state.recorder.sessions_dir) if "feedback" in r]
    assert feedback == [
        {
            "timestamp": feedback[0]["timestamp"],
            "feedback": {"request_id": reply.id, "success": True, "comment": "great"},
        }
    ]


def test_fifty_concurrent_requests_lose_no_record(served: RunningServer) -> None:
    url = f"{served.base}/v1/chat/completions"
    statuses: list[int] = []

    def ask(i: int) -> None:
        body = {"messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 2}
        statuses.append(httpx.post(url, json=body, timeout=300).status_code)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 50
    records = read_records(served.state.recorder.sessions_dir)
    assert sorted(r["user"] for r in records) == sorted(f"question {i}" for i in range(50))
    assert len({r["metadata"]["request_id"] for r in records}) == 50


def test_client_disconnect_mid_stream_keeps_earlier_records(served: RunningServer) -> None:
    url = f"{served.base}/v1/chat/completions"
    first = {"messages": [{"role": "user", "content": "kept"}], "max_tokens": 3}
    assert httpx.post(url, json=first, timeout=60).status_code == 200
    body = {
        "messages": [{"role": "user", "content": "abandoned"}],
        "max_tokens": 64,
        "stream": True,
    }
    with httpx.stream("POST", url, json=body, timeout=60) as response:
        next(response.iter_lines())  # the first chunk arrived; hang up now
    again = {"messages": [{"role": "user", "content": "after"}], "max_tokens": 3}
    assert httpx.post(url, json=again, timeout=60).status_code == 200
    users = [r["user"] for r in read_records(served.state.recorder.sessions_dir)]
    assert users[0] == "kept" and users[-1] == "after"
    path = next((served.state.recorder.sessions_dir).glob("serve-*/interactions.jsonl"))
    for line in path.read_text().splitlines():
        json.loads(line)  # every line whole


def test_bearer_token_is_required_when_set(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    state = ServeState(
        engines={"v1.1": engine},
        default_version="v1.1",
        recorder=Recorder(tmp_path / "sessions"),
        model_name="m",
        max_tokens=4,
        max_prompt_tokens=200,
        token="s3cret-token-value",
    )
    with RunningServer(state) as server:
        body = {"messages": [{"role": "user", "content": "hi"}]}
        url = f"{server.base}/v1/chat/completions"
        assert httpx.post(url, json=body).status_code == 401
        headers = {"Authorization": "Bearer s3cret-token-value"}
        assert httpx.post(url, json=body, headers=headers, timeout=60).status_code == 200
        assert httpx.get(f"{server.base}/health").status_code == 200


def test_ab_routes_by_weight_and_sticks_to_a_client(served: RunningServer) -> None:
    router = Router(parse_weights("v1.1:0.3,v1.2:0.7"))
    picks = [router.choose(f"client-{i}") for i in range(2000)]
    share = picks.count("v1.1") / len(picks)
    assert 0.26 < share < 0.34
    assert all(router.choose(f"client-{i}") == picks[i] for i in range(50))
    served.state.router = Router(parse_weights("v1.1:0.5,v1.2:0.5"))
    url = f"{served.base}/v1/chat/completions"
    body = {"messages": [{"role": "user", "content": "ab"}], "max_tokens": 1}
    seen: dict[str, set[str]] = {}
    for i in range(6):
        client_id = f"user-{i % 3}"
        response = httpx.post(url, json=body, headers={"X-Client-Id": client_id}, timeout=60)
        seen.setdefault(client_id, set()).add(response.headers["x-mlx-rsi-version"])
    assert all(len(versions) == 1 for versions in seen.values())


@pytest.mark.parametrize(
    "spec", ["v1.1", "v1.1:x,v1.2:1", "v1.1:1", "../a:1,b:1", "v1.1:-1,v1.2:1"]
)
def test_bad_ab_specs_are_one_line_errors(spec: str) -> None:
    from mlx_rsi.errors import UsageError

    with pytest.raises(UsageError):
        parse_weights(spec)


def test_ab_report_counts_feedback_and_calls_the_evidence() -> None:
    records: list[dict[str, object]] = []
    for version, good, bad in (("v1.1", 8, 12), ("v1.2", 18, 2)):
        for i in range(good + bad):
            rid = f"{version}-{i}"
            meta = {"request_id": rid, "version": version, "latency_ms": 100.0 + i}
            records.append({"user": "q", "assistant": "a", "metadata": meta})
            records.append({"feedback": {"request_id": rid, "success": i < good}})
    report = ab_report(records)
    by_version = {a.version: a for a in report.arms}
    assert by_version["v1.2"].success_rate == pytest.approx(0.9)
    assert by_version["v1.1"].successes == 8 and by_version["v1.1"].feedback == 20
    assert report.leader == "v1.2" and report.enough_evidence
    low, high = by_version["v1.2"].success_interval() or (0, 0)
    assert low < 0.9 < high
    few = ab_report(records[:8] + records[40:48])
    assert not few.enough_evidence and "not enough" in few.verdict


def test_public_bind_without_token_is_refused(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("MLX_RSI_SERVE_TOKEN", raising=False)
    code, _out, err = cli.main("serve", "--host", "0.0.0.0")
    assert code == 2
    assert "MLX_RSI_SERVE_TOKEN" in err and len(err.strip().splitlines()) == 1


def test_serve_without_a_promoted_version_says_what_to_do(cli) -> None:  # type: ignore[no-untyped-def]
    cli.main("init")
    code, _out, err = cli.main("serve")
    assert code == 2 and "mlx-rsi train" in err


def test_gguf_engine_serves_the_gguf_export(tmp_path: Path, tiny_llama_dir: Path) -> None:
    pytest.importorskip("llama_cpp")
    from mlx_rsi.export.gguf import write_gguf

    gguf = write_gguf(tiny_llama_dir, tmp_path / "model-q8_0.gguf", "q8_0")
    state = ServeState(
        engines={"v1.1": load_engine("gguf", gguf)},
        default_version="v1.1",
        recorder=Recorder(tmp_path / "sessions"),
        model_name="m",
        max_tokens=6,
        max_prompt_tokens=200,
    )
    with RunningServer(state) as server:
        api = client(server)
        reply = api.chat.completions.create(  # type: ignore[attr-defined]
            model="m", messages=[{"role": "user", "content": "hello"}], max_tokens=5
        )
        stream = api.chat.completions.create(  # type: ignore[attr-defined]
            model="m", messages=[{"role": "user", "content": "hello"}], max_tokens=5, stream=True
        )
        streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert reply.choices[0].message.content == streamed  # greedy: the same answer both ways
    records = read_records(state.recorder.sessions_dir)
    assert [r["metadata"]["engine"] for r in records] == ["gguf", "gguf"]
