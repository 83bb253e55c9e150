"""A Hugging Face hub on 127.0.0.1 for tests: repositories by commit, served with the hub's file protocol.

It answers what huggingface_hub asks: the revision (`/api/models/REPO/revision/REV`), the file listing
(`/api/models/REPO/tree/REV`) and the files (`HEAD`/`GET /REPO/resolve/REV/PATH`, with X-Repo-Commit, ETag,
X-Linked-Etag/Size for LFS files), plus plain files under /files/ for URL weights. `fail[path] = ...`
makes an answer fail on demand: 404, 401, 500, "slow", "truncate" or "tamper";
`redirects[path] = url` answers with a 302.
"""

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

LFS_SUFFIXES = (".safetensors", ".bin", ".pt")


class Hub:
    def __init__(self):
        self.commits = {}  # repo -> {commit: {path: bytes}}
        self.refs = {}  # repo -> {branch: commit}
        self.files = {}  # /files/NAME -> bytes
        self.redirects = {}  # /files/NAME -> where a 302 sends it
        self.fail, self.requests = {}, []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def push(self, repo, files, *, branch="main", commit=None):
        """A new commit of `files` ({path: bytes}, or a folder) on `branch`; returns its sha."""
        if isinstance(files, (str, Path)):
            files = {str(p.relative_to(files)): p.read_bytes() for p in sorted(Path(files).rglob("*")) if p.is_file()}
        commit = commit or hashlib.sha1(repr(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items()))
                                        .encode() + repo.encode() + str(len(self.commits.get(repo, {}))).encode()).hexdigest()
        self.commits.setdefault(repo, {})[commit] = dict(files)
        self.refs.setdefault(repo, {})[branch] = commit
        return commit

    def close(self):
        self.server.shutdown()

    def resolve(self, repo, revision):
        commits = self.commits.get(repo)
        if commits is None:
            return None, "RepoNotFound"
        commit = self.refs[repo].get(revision, revision)
        return (commit, None) if commit in commits else (None, "RevisionNotFound")

    def handler(self):
        return type("Handler", (HubHandler,), {"hub": self})


class HubHandler(BaseHTTPRequestHandler):
    """Answers as the hub does, from `hub` (a Hub), failing as `hub.fail` says."""

    hub = None

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.hub.requests.append(("HEAD", self.path))
        self.answer(body=False)

    def do_GET(self):
        self.hub.requests.append(("GET", self.path))
        self.answer(body=True)

    def answer(self, body):
        hub, path = self.hub, unquote(urlparse(self.path).path)
        failure = next((v for k, v in hub.fail.items() if k in path), None)
        if isinstance(failure, int):
            return self.send(failure, b"{}", {"X-Error-Code": "RepoNotFound" if failure == 404 else ""}, body)
        if failure == "slow":
            time.sleep(3)
        routed = route(hub, path)
        if routed is None:
            return self.send(404, b'{"error": "not found"}', {"X-Error-Code": "EntryNotFound"}, body)
        status, payload, headers = routed
        if failure == "truncate" and status == 200:
            headers["Content-Length"] = str(len(payload))
            payload = payload[: len(payload) // 2]
        elif failure == "tamper" and status == 200 and "/resolve/" in path:
            payload = bytes(b ^ 1 for b in payload)
        self.send(status, payload, headers, body)

    def send(self, status, payload, headers, body):
        self.send_response(status)
        headers = {"Content-Length": str(len(payload)), **{k: v for k, v in headers.items() if v}}
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            try:
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass


def route(hub, path):
    """(status, payload, headers) for a hub path, or None."""
    if path in hub.redirects:
        return 302, b"", {"Location": hub.redirects[path]}
    if path.startswith("/files/"):
        data = hub.files.get(path[len("/files/"):])
        return None if data is None else (200, data, {"ETag": f'"{hashlib.sha256(data).hexdigest()}"'})
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "models"] and len(parts) == 4:  # the repository's main branch
        parts += ["revision", "main"]
    if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
        repo, kind, revision = "/".join(parts[2:4]), parts[4], parts[5]
        commit, error = hub.resolve(repo, revision)
        if commit is None:
            return 404, b"{}", {"X-Error-Code": error}
        files = hub.commits[repo][commit]
        if kind == "revision":
            info = {"id": repo, "modelId": repo, "sha": commit, "siblings": [{"rfilename": p} for p in files]}
            return 200, json.dumps(info).encode(), {"Content-Type": "application/json"}
        return 200, json.dumps([tree_entry(p, d) for p, d in files.items()]).encode(), {"Content-Type": "application/json"}
    if len(parts) >= 5 and parts[2] == "resolve":
        repo, revision, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        commit, error = hub.resolve(repo, revision)
        data = hub.commits[repo][commit].get(name) if commit else None
        if data is None:
            return 404, b"{}", {"X-Error-Code": error or "EntryNotFound"}
        etag = hashlib.sha256(data).hexdigest() if name.endswith(LFS_SUFFIXES) else blob_id(data)
        headers = {"X-Repo-Commit": commit, "ETag": f'"{etag}"'}
        if name.endswith(LFS_SUFFIXES):
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))})
        return 200, data, headers
    return None


def blob_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def tree_entry(path, data):
    entry = {"type": "file", "path": path, "size": len(data), "oid": blob_id(data)}
    if path.endswith(LFS_SUFFIXES):
        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return entry
