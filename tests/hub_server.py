"""A loopback server speaking the Hub endpoints `create_repo` + `upload_folder` + `create_tag` use.

The endpoints are those FACTS.md lists for huggingface_hub 2.4: repo creation,
YAML validation (README.md uploads), preupload (every file "regular": sent inline,
base64, in the commit's NDJSON body), commit, and tag. What arrives is kept for the
tests to inspect; ``fail_commit`` makes the commit answer 500 or drop the connection.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class HubState:
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)  # repo -> {"private": ...}
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # repo -> path -> bytes
    tags: dict[str, list[str]] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)  # Authorization headers seen
    requests: list[str] = field(default_factory=list)  # "METHOD path"
    fail_commit: str | None = None  # None | "500" | "drop"


class HubServer:
    def __init__(self) -> None:
        self.state = HubState()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.hub_state = self.state  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    @property
    def state(self) -> HubState:
        return self.server.hub_state  # type: ignore[attr-defined,no-any-return]

    def log_message(self, *_args: Any) -> None:  # keep test output clean
        return

    def do_GET(self) -> None:
        self.state.requests.append(f"GET {self.path}")
        self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        self.state.requests.append(f"POST {self.path}")
        self.state.auth.append(self.headers.get("Authorization", ""))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?")[0]
        parts = path.strip("/").split("/")
        if path == "/api/repos/create":
            self._create(json.loads(body))
        elif path == "/api/validate-yaml":
            self._json(200, {"errors": [], "warnings": []})
        elif len(parts) == 6 and parts[:2] == ["api", "models"]:
            self._repo_call(f"{parts[2]}/{parts[3]}", parts[4], body)
        else:
            self._json(404, {"error": f"unknown endpoint {path}"})

    def _create(self, payload: dict[str, Any]) -> None:
        repo = f"{payload.get('organization') or 'user'}/{payload['name']}"
        if repo in self.state.repos:
            self._json(409, {"error": "You already created this model repo"})
            return
        self.state.repos[repo] = {"private": payload.get("visibility") == "private"}
        self._json(200, {"url": f"http://{self.headers['Host']}/{repo}", "name": repo})

    def _repo_call(self, repo: str, action: str, body: bytes) -> None:
        if action == "preupload":
            files = json.loads(body)["files"]
            answer = [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
            ]
            self._json(200, {"files": answer, "commitOid": "0" * 40})
        elif action == "commit":
            self._commit(repo, body)
        elif action == "tag":
            self.state.tags.setdefault(repo, []).append(json.loads(body)["tag"])
            self._json(200, {})
        else:
            self._json(404, {"error": f"unknown action {action}"})

    def _commit(self, repo: str, body: bytes) -> None:
        if self.state.fail_commit == "drop":
            self.close_connection = True
            self.connection.close()
            return
        if self.state.fail_commit == "500":
            self._json(500, {"error": "Internal Error - We're working hard to fix this"})
            return
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next(x["value"] for x in lines if x["key"] == "header")
        stored = self.state.files.setdefault(repo, {})
        for item in lines:
            if item["key"] == "file":
                value = item["value"]
                stored[value["path"]] = base64.b64decode(value["content"])
        self.state.commits.append({"repo": repo, "summary": header.get("summary")})
        oid = f"{len(self.state.commits):040x}"
        self._json(
            200,
            {
                "commitUrl": f"http://{self.headers['Host']}/{repo}/commit/{oid}",
                "commitOid": oid,
            },
        )

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
