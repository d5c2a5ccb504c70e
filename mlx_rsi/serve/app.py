"""The OpenAI-compatible HTTP app: chat completions (plain and SSE), models, feedback, health.

Errors use OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``) so
clients show them as they would the real API's: a malformed request is 400, a
missing or wrong bearer token 401, an unknown model or request id 404, a prompt
over ``serve.max_prompt_tokens`` 413. Each answer is recorded once it is
complete; a stream the client abandons is not recorded (it is not an answer
anyone saw to the end) and nothing recorded before is touched.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from mlx_rsi.serve.abtest import Router
from mlx_rsi.serve.engines import Engine, Generation
from mlx_rsi.serve.recorder import Recorder, new_request_id

INVALID = "invalid_request_error"


@dataclass
class ServeState:
    engines: dict[str, Engine]  # version -> loaded engine
    default_version: str
    recorder: Recorder
    model_name: str
    max_tokens: int
    max_prompt_tokens: int
    router: Router | None = None
    token: str | None = None  # bearer token required on /v1 when set

    def model_id(self, version: str) -> str:
        return f"{self.model_name}:{version}"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    stream: bool = False
    user: str | None = None


class FeedbackRequest(BaseModel):
    request_id: str = Field(min_length=1)
    rating: Literal["up", "down"] | None = None
    success: bool | None = None
    comment: str = ""


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def create_app(state: ServeState) -> FastAPI:
    app = FastAPI(title="mlx-rsi", docs_url=None, redoc_url=None, openapi_url=None)
    _install_error_handlers(app)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "versions": sorted(state.engines), "default": state.default_version}

    @app.get("/v1/models")
    def models(request: Request) -> dict[str, Any]:
        _authorize(state, request)
        data = [
            {"id": state.model_id(v), "object": "model", "created": 0, "owned_by": "mlx-rsi"}
            for v in sorted(state.engines)
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions", response_model=None)
    def chat_completions(body: ChatRequest, request: Request) -> Any:
        _authorize(state, request)
        return _complete(state, body, request)

    @app.post("/v1/feedback")
    def feedback(body: FeedbackRequest, request: Request) -> dict[str, Any]:
        _authorize(state, request)
        success = body.success if body.success is not None else body.rating == "up"
        if body.success is None and body.rating is None:
            raise ApiError(400, "give 'rating' (up|down) or 'success' (bool)", INVALID)
        if not state.recorder.record_feedback(body.request_id, success, body.comment):
            raise ApiError(404, f"no recorded request '{body.request_id}'", INVALID)
        return {"ok": True, "request_id": body.request_id, "success": success}

    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.kind, exc.code), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
        return JSONResponse(error_body(message, INVALID, None, param), 400)


def _authorize(state: ServeState, request: Request) -> None:
    if state.token is None:
        return
    given = request.headers.get("authorization", "")
    if not secrets.compare_digest(given.encode(), f"Bearer {state.token}".encode()):
        raise ApiError(401, "missing or wrong bearer token", INVALID, "invalid_api_key")


def _pick_version(state: ServeState, body: ChatRequest, request: Request, request_id: str) -> str:
    if body.model and body.model not in (state.model_name, "default"):
        name = body.model.rsplit(":", 1)[-1]
        if name not in state.engines:
            raise ApiError(
                404,
                f"model '{body.model}' is not served here",
                INVALID,
                "model_not_found",
            )
        return name
    if state.router is None:
        return state.default_version
    client = request.headers.get("x-client-id") or body.user or request_id
    return state.router.choose(client)


def _complete(state: ServeState, body: ChatRequest, request: Request) -> Any:
    request_id = new_request_id()
    version = _pick_version(state, body, request, request_id)
    engine = state.engines[version]
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    prompt_tokens = engine.count_prompt_tokens(messages)
    if prompt_tokens > state.max_prompt_tokens:
        raise ApiError(
            413,
            f"the prompt has {prompt_tokens} tokens; this server takes at most "
            f"{state.max_prompt_tokens} (serve.max_prompt_tokens)",
            INVALID,
            "context_length_exceeded",
        )
    call = _Call(state, engine, version, request_id, messages, body, request)
    if body.stream:
        return StreamingResponse(
            call.sse_async(), media_type="text/event-stream", headers=call.headers
        )
    return JSONResponse(call.whole(), headers=call.headers)


class _Call:
    """One chat completion: generate, shape the response, record the answer."""

    def __init__(
        self,
        state: ServeState,
        engine: Engine,
        version: str,
        request_id: str,
        messages: list[dict[str, Any]],
        body: ChatRequest,
        request: Request,
    ) -> None:
        self.state, self.engine, self.version = state, engine, version
        self.request_id, self.messages = request_id, messages
        self.max_tokens = body.max_completion_tokens or body.max_tokens or state.max_tokens
        self.temperature = body.temperature if body.temperature is not None else 0.0
        self.client = request.headers.get("x-client-id") or body.user
        self.created = int(time.time())
        self.result = Generation()
        self.cancel = threading.Event()
        self.headers = {"x-request-id": request_id, "x-mlx-rsi-version": version}

    def _deltas(self) -> Iterator[str]:
        return self.engine.stream(
            self.messages,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            cancel=self.cancel,
            result=self.result,
        )

    def whole(self) -> dict[str, Any]:
        started = time.monotonic()
        answer = "".join(self._deltas())
        self._record(answer, started)
        message = {"role": "assistant", "content": answer}
        return {
            **self._envelope("chat.completion"),
            "choices": [{"index": 0, "message": message, "finish_reason": self._finish()}],
            "usage": self._usage(),
        }

    async def sse_async(self) -> AsyncIterator[str]:
        """``sse`` pulled from a worker thread; a client that hangs up cancels generation."""
        chunks = self.sse()
        try:
            while True:
                chunk = await anyio.to_thread.run_sync(next, chunks, None)
                if chunk is None:
                    return
                yield chunk
        finally:
            self.cancel.set()

    def sse(self) -> Iterator[str]:
        started = time.monotonic()
        parts: list[str] = []
        yield self._chunk({"role": "assistant", "content": ""}, None)
        for delta in self._deltas():
            parts.append(delta)
            yield self._chunk({"content": delta}, None)
        # Recorded before the closing chunks: a client may hang up as soon as it has
        # the answer. A stream abandoned earlier is not an answer anyone saw: unrecorded.
        self._record("".join(parts), started)
        yield self._chunk({}, self._finish(), usage=self._usage())
        yield "data: [DONE]\n\n"

    def _chunk(self, delta: dict[str, Any], finish: str | None, usage: Any = None) -> str:
        chunk = {
            **self._envelope("chat.completion.chunk"),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage is not None:
            chunk["usage"] = usage
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    def _envelope(self, kind: str) -> dict[str, Any]:
        return {
            "id": self.request_id,
            "object": kind,
            "created": self.created,
            "model": self.state.model_id(self.version),
        }

    def _finish(self) -> str:
        return "length" if self.result.finish_reason == "length" else "stop"

    def _usage(self) -> dict[str, int]:
        prompt, completion = self.result.prompt_tokens, self.result.completion_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _record(self, answer: str, started: float) -> None:
        metadata: dict[str, Any] = {
            "version": self.version,
            "engine": self.engine.name,
            "latency_ms": round((time.monotonic() - started) * 1000, 1),
            "finish_reason": self._finish(),
            "completion_tokens": self.result.completion_tokens,
        }
        if self.client:
            metadata["client_id"] = self.client
        self.state.recorder.record_interaction(self.request_id, self.messages, answer, metadata)
