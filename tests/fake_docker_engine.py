"""A small fake Docker Engine API on a Unix socket: the real Docker SDK talks HTTP to it, so a
misspelled argument or a wrong call fails as it would against a real daemon.

Only what `artifact.core.docker_runner` needs is served; anything else gets a 404 naming the
request, which makes an unexpected SDK call visible in the test's failure.
"""

from __future__ import annotations

import json
import shutil
import socketserver
import sys
import struct
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlparse

API_VERSION = "1.43"
NO_GPU_DRIVER = 'could not select device driver "" with capabilities: [[gpu]]'
STDOUT, STDERR = 1, 2


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the /v1.xx prefix
    query: dict
    body: dict | None


@dataclass(frozen=True)
class Reply:
    code: int
    body: object = None  # sent as JSON
    raw: bytes | None = None  # sent as is, e.g. a multiplexed log stream
    kind: str = "application/json"


def frame(stream: int, data: bytes) -> bytes:
    """One frame of docker's multiplexed stream: [stream, 0, 0, 0, big-endian size] + data."""
    return struct.pack(">BxxxL", stream, len(data)) + data


class FakeEngine:
    def __init__(self, images=("mgrb-artifact:0.1.0",)):
        self.images = set(images)
        self.containers: dict[str, dict] = {}
        self.requests: list[Request] = []
        self.gpu_runtime = True  # False: starting with a GPU request fails as without the toolkit
        self.logs: list[tuple[int, bytes]] = [(STDOUT, b"loading digits ...\n"),
                                              (STDERR, b"mgrb: error: something\n")]
        # AF_UNIX paths are limited to ~107 bytes: stay short, in /tmp.
        self.folder = Path(tempfile.mkdtemp(dir="/tmp", prefix="fde"))
        self.socket = str(self.folder / "d.sock")
        self.server = _Server(self.socket, _handler_for(self))
        # A short poll keeps close() quick: shutdown waits for the loop's next poll.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.closed = False
        self.thread.start()

    @property
    def base_url(self) -> str:
        return "unix://" + self.socket

    def close(self):
        """Stop serving and remove the socket; a second call does nothing."""
        if self.closed:
            return
        self.closed = True
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- what tests look at or change ----------------------------------------------------
    def called(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def add_container(self, ident: str, *, name: str, labels: dict, status="running", pid=7):
        self.containers[ident] = {"body": {"Image": "other", "Labels": labels}, "name": name,
                                  "status": status, "exit": 0, "pid": pid}

    def mark_exited(self, ident: str, code: int):
        self.containers[ident].update(status="exited", exit=code, pid=0)

    # -- the API -------------------------------------------------------------------------
    def answer(self, request: Request) -> Reply:
        parts = request.path.strip("/").split("/")
        if parts == ["_ping"]:
            return Reply(200, raw=b"OK", kind="text/plain")
        if parts == ["version"]:
            return Reply(200, {"ApiVersion": API_VERSION, "Version": "24.0.0"})
        if parts[0] == "images":
            return self._images(request, parts[1:])
        if parts[0] == "containers":
            return self._containers(request, parts[1:])
        return _unknown(request)

    def _images(self, request, parts):
        if parts == ["create"]:  # a pull: the fake has no registry, tests assert it never comes
            return Reply(500, {"message": "the fake engine has no registry"})
        if request.method == "GET" and parts[-1:] == ["json"]:
            name = "/".join(parts[:-1])
            if name in self.images:
                return Reply(200, {"Id": "sha256:" + "ab" * 32, "RepoTags": [name]})
            return Reply(404, {"message": f"No such image: {name}"})
        return _unknown(request)

    def _containers(self, request, parts):
        if parts == ["create"] and request.method == "POST":
            ident = f"{len(self.containers) + 1:064x}"
            self.containers[ident] = {"body": request.body, "name": request.query["name"][0],
                                      "status": "created", "exit": 0, "pid": 0}
            return Reply(201, {"Id": ident, "Warnings": []})
        if parts == ["json"] and request.method == "GET":
            wanted = json.loads(request.query.get("filters", ["{}"])[0]).get("label", [])
            return Reply(200, [self._inspect(i) for i, c in self.containers.items()
                               if all(_has_label(c, w) for w in wanted)])
        if not parts or parts[0] not in self.containers:
            return Reply(404, {"message": f"No such container: {parts[0] if parts else ''}"})
        ident, action = parts[0], "/".join(parts[1:])
        handler = {("GET", "json"): self._inspect_reply, ("POST", "start"): self._start,
                   ("POST", "stop"): self._stop, ("GET", "logs"): self._logs,
                   ("DELETE", ""): self._remove}.get((request.method, action))
        return handler(ident, request) if handler else _unknown(request)

    def _inspect_reply(self, ident, request):
        return Reply(200, self._inspect(ident))

    def _start(self, ident, request):
        container = self.containers[ident]
        # As the real daemon: GPU requests are resolved at start, the container stays "created".
        if container["body"].get("HostConfig", {}).get("DeviceRequests") and not self.gpu_runtime:
            return Reply(400, {"message": NO_GPU_DRIVER})
        container.update(status="running", pid=4242)
        return Reply(204)

    def _stop(self, ident, request):
        self.mark_exited(ident, 130)  # mgrb checkpoints on SIGTERM and exits with 130
        return Reply(204)

    def _logs(self, ident, request):
        tail = request.query.get("tail", ["all"])[0]
        lines = self.logs if tail == "all" else self.logs[len(self.logs) - int(tail):]
        return Reply(200, raw=b"".join(frame(s, d) for s, d in lines),
                     kind="application/vnd.docker.raw-stream")

    def _remove(self, ident, request):
        del self.containers[ident]
        return Reply(204)

    def _inspect(self, ident):
        container = self.containers[ident]
        body = container["body"]
        labels = body.get("Labels") or {}
        state = {"Status": container["status"], "Running": container["status"] == "running",
                 "ExitCode": container["exit"], "Pid": container["pid"]}
        return {"Id": ident, "Name": "/" + container["name"], "Names": ["/" + container["name"]],
                "Image": body["Image"], "Labels": labels, "State": state,
                "Config": {"Labels": labels, "Image": body["Image"], "Tty": False},
                "HostConfig": body.get("HostConfig", {})}


def _has_label(container, wanted: str) -> bool:
    key, _, value = wanted.partition("=")
    labels = container["body"].get("Labels") or {}
    return key in labels and (not value or labels[key] == value)


def _unknown(request) -> Reply:
    return Reply(404, {"message": f"the fake engine does not know {request.method} {request.path}"})


def _strip_version(path: str) -> str:
    parts = path.split("/")
    if len(parts) > 1 and parts[1].startswith("v1."):
        del parts[1]
    return "/".join(parts)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """A client that hangs up before its reply is written (the tests' short timeouts do)
        is expected: socketserver would print a traceback that reads as a failure in the
        middle of a passing run. Anything else is printed as before."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def _handler_for(engine: FakeEngine):
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0 (the default): one request per connection, so no handler thread outlives close().

        def address_string(self):
            return "fake"  # a Unix socket peer has no host/port

        def log_message(self, *args):
            pass

        def _handle(self):
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            request = Request(self.command, _strip_version(url.path), parse_qs(url.query), body)
            engine.requests.append(request)
            self._send(engine.answer(request))

        def _send(self, reply: Reply):
            data = reply.raw if reply.raw is not None else (
                b"" if reply.body is None else json.dumps(reply.body).encode())
            self.send_response(reply.code)
            if reply.code != 204:
                self.send_header("Content-Type", reply.kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _handle

    return Handler
