"""A small fake Docker Engine API on a Unix socket: the real Docker SDK talks HTTP to it, so a
misspelled argument or a wrong call fails as it would against a real daemon."""

from __future__ import annotations

import json
import socketserver
import struct
import tempfile
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlparse


class FakeEngine:
    def __init__(self, images=("mgrb-artifact:0.1.0",)):
        self.images = set(images)
        self.containers: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.gpu_runtime = True
        self.folder = Path(tempfile.mkdtemp(dir="/tmp", prefix="fde"))
        self.socket = str(self.folder / "d.sock")
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def address_string(self):
                return "fake"

            def log_message(self, *args):
                pass

            def _reply(self, code, body=None, raw=None, kind="application/json"):
                data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method):
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                engine.requests.append((method, url.path, body))
                code, reply, raw = engine.answer(method, url.path, parse_qs(url.query), body)
                self._reply(code, reply, raw,
                            "application/vnd.docker.raw-stream" if raw is not None else
                            "application/json")

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_HEAD(self):
                self._handle("HEAD")

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.server = Server(self.socket, Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # -- the API -------------------------------------------------------------------------
    def answer(self, method, path, query, body):
        parts = path.strip("/").split("/")
        if parts and parts[0].startswith("v1."):
            parts = parts[1:]
        if parts == ["_ping"]:
            return 200, None, b"OK"
        if parts == ["version"]:
            return 200, {"ApiVersion": "1.43", "Version": "24.0.0"}, None
        if parts[:1] == ["images"] and parts[-1] == "json":
            name = "/".join(parts[1:-1])
            if name in self.images:
                return 200, {"Id": "sha256:" + "ab" * 32, "RepoTags": [name]}, None
            return 404, {"message": f"No such image: {name}"}, None
        if parts == ["images", "create"]:
            return 500, {"message": "the fake engine has no registry"}, None
        if parts == ["containers", "create"]:
            if body.get("HostConfig", {}).get("DeviceRequests") and not self.gpu_runtime:
                return 500, {"message": 'could not select device driver "" with capabilities: '
                                        "[[gpu]]"}, None
            ident = f"{len(self.containers) + 1:064x}"
            self.containers[ident] = {"body": body, "name": query["name"][0], "status": "created",
                                      "exit": 0, "pid": 0}
            return 201, {"Id": ident, "Warnings": []}, None
        if parts == ["containers", "json"]:
            wanted = json.loads(query.get("filters", ["{}"])[0]).get("label", [])
            listed = [self._inspect(i) for i, c in self.containers.items()
                      if all(self._has_label(c, w) for w in wanted)]
            return 200, listed, None
        if parts[:1] == ["containers"] and len(parts) == 3:
            ident, action = parts[1], parts[2]
            if ident not in self.containers:
                return 404, {"message": f"No such container: {ident}"}, None
            container = self.containers[ident]
            if action == "json":
                return 200, self._inspect(ident), None
            if action == "start":
                container.update(status="running", pid=4242)
                return 204, None, None
            if action == "stop":
                container.update(status="exited", exit=130, pid=0, stopped_with=query)
                return 204, None, None
            if action == "logs":
                frames = b"".join(struct.pack(">BxxxL", 2, len(line)) + line for line in
                                  (b"loading digits ...\n", b"mgrb: error: something\n"))
                return 200, None, frames
        return 404, {"message": f"the fake engine does not know {method} {path}"}, None

    @staticmethod
    def _has_label(container, wanted):
        key, _, value = wanted.partition("=")
        labels = container["body"].get("Labels") or {}
        return key in labels and (not value or labels[key] == value)

    def _inspect(self, ident):
        container = self.containers[ident]
        body = container["body"]
        return {"Id": ident, "Name": "/" + container["name"], "Names": ["/" + container["name"]],
                "Image": body["Image"], "Labels": body.get("Labels") or {},
                "State": {"Status": container["status"], "Running": container["status"] == "running",
                          "ExitCode": container["exit"], "Pid": container["pid"]},
                "Config": {"Labels": body.get("Labels") or {}, "Image": body["Image"], "Tty": False},
                "HostConfig": body.get("HostConfig", {})}
