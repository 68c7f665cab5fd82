#!/usr/bin/env python3
"""A small Hugging Face hub mirror for the `realm pull` tests (Python 3 stdlib only).

Serves, on a loopback port, the endpoints `realm pull` uses:
  GET /api/models/OWNER/REPO[/revision/REV]   {"siblings": [{rfilename, size, lfs: {sha256, size}}]}
  GET|HEAD /OWNER/REPO/resolve/REV/PATH        302 to /cdn/OWNER/REPO/PATH with X-Linked-Etag
                                               (the published sha256), X-Linked-Size, ETag
  GET /cdn/OWNER/REPO/PATH                     the bytes, with Range (206, 416) and ETag
  GET /plain/NAME                              a file by URL, no sha256 published
  GET /_control/cut?file=NAME&after=N          cut the connection after N bytes, once
  GET /_control/ignore_range?file=NAME         answer the next Range request for NAME with 200
Repos are a dict (see Mirror.__init__); a repo may be gated (401 without the right token) and
redirect its downloads to another host name (cdn_host) so tests see where the token goes.
Run alone: mirror.py CONFIG.json [PORT] (the config is that dict as JSON)."""
import hashlib
import json
import os
import socket
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Mirror:
    """repos: {"owner/repo": {"files": {"path/in/repo": {"path": LOCAL, "sha256": PUBLISHED?,
    "lfs": True}}, "token": "T"?, "cdn_host": "localhost"?}}; plain: {"name": LOCAL}."""

    def __init__(self, repos, plain=None):
        self.repos = repos
        self.plain = plain or {}
        for repo in repos.values():
            for f in repo["files"].values():
                f.setdefault("lfs", True)
                f.setdefault("sha256", sha256_file(f["path"]))
                f["size"] = os.path.getsize(f["path"])
        self.lock = threading.Lock()
        self.cut = {}           # file name -> bytes to send before cutting, once
        self.ignore_range = set()
        self.log = []           # (method, path, headers dict) per request
        handler = type("Handler", (Handler,), {"mirror": self})
        self.server = Server(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def requests(self, prefix):
        with self.lock:
            return [r for r in self.log if r[1].startswith(prefix)]

    def clear_log(self):
        with self.lock:
            self.log.clear()


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Clients that hang up (a cut connection, a client that gave up) are not errors here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    mirror = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send_json(self, status, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def authorized(self, repo):
        token = repo.get("token")
        return token is None or self.headers.get("Authorization") == f"Bearer {token}"

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        m = self.mirror
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        query = urllib.parse.parse_qs(url.query)
        with m.lock:
            m.log.append((self.command, path, dict(self.headers.items())))
        parts = path.strip("/").split("/")
        if parts[0] == "_control":
            name = query.get("file", [""])[0]
            with m.lock:
                if parts[1] == "cut":
                    m.cut[name] = int(query["after"][0])
                elif parts[1] == "ignore_range":
                    m.ignore_range.add(name)
            return self.send_json(200, {"ok": True})
        if parts[0] == "api" and len(parts) >= 4 and parts[1] == "models":
            repo_id = "/".join(parts[2:4])
            repo = m.repos.get(repo_id)
            if repo is None:
                return self.send_json(404, {"error": "Repository not found"})
            if not self.authorized(repo):
                return self.send_json(401, {"error": "Access to model " + repo_id +
                                            " is restricted. You must have access to it and be "
                                            "authenticated to access it. Please log in."})
            siblings = [{"rfilename": ".gitattributes", "size": 10},
                        {"rfilename": "README.md", "size": 20}]
            for name, f in repo["files"].items():
                s = {"rfilename": name, "size": f["size"]}
                if f["lfs"]:
                    s["lfs"] = {"sha256": f["sha256"], "size": f["size"], "pointerSize": 134}
                siblings.append(s)
            return self.send_json(200, {"id": repo_id, "sha": "0" * 40, "siblings": siblings})
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id = "/".join(parts[0:2])
            repo = m.repos.get(repo_id)
            file_path = "/".join(parts[4:])
            if repo is None:
                return self.send_json(404, {"error": "Repository not found"},
                                      {"X-Error-Code": "RepoNotFound"})
            if not self.authorized(repo):
                return self.send_json(401, {"error": "restricted"}, {"X-Error-Code": "GatedRepo"})
            f = repo["files"].get(file_path)
            if f is None:
                return self.send_json(404, {"error": "Entry not found"},
                                      {"X-Error-Code": "EntryNotFound"})
            host = repo.get("cdn_host", "127.0.0.1")
            location = f"http://{host}:{m.port}/cdn/{repo_id}/{urllib.parse.quote(file_path)}"
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("X-Linked-Etag", f'"{f["sha256"]}"')
            self.send_header("X-Linked-Size", str(f["size"]))
            self.send_header("ETag", '"0123abcd"')  # the git blob's etag, not the sha256
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if parts[0] == "cdn" and len(parts) >= 4:
            repo = m.repos.get("/".join(parts[1:3]))
            f = repo and repo["files"].get("/".join(parts[3:]))
            if not f:
                return self.send_json(404, {"error": "no such object"})
            return self.send_file(f["path"], "/".join(parts[3:]), f'"{f["sha256"]}"')
        if parts[0] == "plain" and len(parts) == 2 and parts[1] in m.plain:
            return self.send_file(m.plain[parts[1]], parts[1], None)
        return self.send_json(404, {"error": "no route " + path})

    def send_file(self, local, name, etag):
        m = self.mirror
        size = os.path.getsize(local)
        start = 0
        rng = self.headers.get("Range")
        with m.lock:
            ignore = name in m.ignore_range and rng is not None
            if ignore:
                m.ignore_range.discard(name)
        if rng and not ignore:
            assert rng.startswith("bytes=") and rng.endswith("-"), rng
            start = int(rng[6:-1])
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        if etag:
            self.send_header("ETag", etag)
        self.end_headers()
        if self.command == "HEAD":
            return
        with m.lock:
            cut = m.cut.pop(name, None)
        with open(local, "rb") as f:
            f.seek(start)
            data = f.read()
        if cut is not None and cut < len(data):
            self.wfile.write(data[:cut])
            self.wfile.flush()
            # An abrupt close mid-body: the client sees fewer bytes than Content-Length.
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(data)


if __name__ == "__main__":
    cfg = json.load(open(sys.argv[1]))
    mirror = Mirror(cfg["repos"], cfg.get("plain"))
    print(mirror.endpoint, flush=True)
    threading.Event().wait()
