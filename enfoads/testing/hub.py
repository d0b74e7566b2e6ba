"""A fake Hugging Face Hub on 127.0.0.1, for testing the real download path offline.

It answers the routes huggingface_hub 2.x uses for ``snapshot_download`` and
``hf_hub_download`` (read from its source):

- ``GET  /api/models/<repo>/revision/<rev>``: model info, ``sha`` = the commit
  (``HfApi.repo_info``, used when a revision is a branch or tag);
- ``GET  /api/models/<repo>/tree/<rev>``: the recursive file list, with
  ``oid`` (git blob id) and ``lfs: {oid: sha256, size, pointerSize}``
  (``HfApi.list_repo_tree``);
- ``HEAD|GET /<repo>/resolve/<rev>/<path>``: small files answer 200 with
  ``ETag`` (git blob id), ``X-Repo-Commit`` and ``Content-Length``; LFS files
  answer 302 to a second "CDN" server (another port, so the client does not
  follow it on HEAD, as with the real CDN) with ``X-Linked-Etag`` (sha256)
  and ``X-Linked-Size``; unknown files or revisions answer 404 with
  ``X-Error-Code: EntryNotFound`` / ``RevisionNotFound``;
- ``GET /cdn/<sha256>`` and ``GET /releases/<name>`` on the CDN server, with
  ``Range`` support (206), for LFS content and release archives (zips).

Test hooks: ``corrupt(sha256)`` serves wrong bytes for a file, ``stall(key,
n)`` sends ``n`` bytes of a file and then hangs (to interrupt a download),
and ``requests`` records every request (server, method, path, Range).

It lives in the package (not only in ``tests/``) because the replica
repositories (``enfoads.testing.replicas``) publish on it, for the parity
tests and for anyone who wants to try ``enfoads preload`` without a network:
``python -m enfoads.testing.replicas`` serves the replicas of the catalogue on it.
"""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(content: bytes) -> bytes:
    sha = hashlib.sha256(content).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(content)}\n".encode()


@dataclass
class FakeFile:
    content: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def blob_id(self) -> str:
        return git_blob_id(lfs_pointer(self.content) if self.lfs else self.content)


@dataclass
class Request:
    server: str  # "hub" or "cdn"
    method: str
    path: str
    range: str | None


@dataclass
class FakeRepo:
    repo_id: str
    commits: dict[str, dict[str, FakeFile]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.refs.get(revision)


class FakeHub:
    LFS_THRESHOLD = 1024  # files at least this big are stored "in LFS"

    def __init__(self):
        self.repos: dict[str, FakeRepo] = {}
        self.archives: dict[str, bytes] = {}
        self.blobs: dict[str, bytes] = {}  # sha256 -> content (the CDN)
        self.requests: list[Request] = []
        self.corrupted: set[str] = set()
        self.stalls: dict[str, int] = {}  # sha256 or archive name -> bytes to send before hanging
        self.stalled = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []

    # -- content -------------------------------------------------------------
    def add_commit(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        branch: str | None = "main",
        commit: str | None = None,
        tags: tuple[str, ...] | list[str] = (),
        lfs: set[str] | frozenset[str] | None = None,
    ) -> str:
        """A new commit of ``repo_id`` holding exactly ``files``; ``branch`` moves to it. Returns the commit.

        Args:
            commit: the commit id to publish it under (40 hex digits, e.g. a real pin); default
                a hash of the content.
            tags: refs (tags) that point at this commit, e.g. ``("v1.0.0",)``.
            branch: the branch that moves to it (``None``: no branch moves).
            lfs: the paths stored "in LFS" (the others are plain git blobs); default: every file of
                at least ``LFS_THRESHOLD`` bytes.
        """
        repo = self.repos.setdefault(repo_id, FakeRepo(repo_id))
        tree = {
            p: FakeFile(c, lfs=(len(c) >= self.LFS_THRESHOLD) if lfs is None else p in lfs) for p, c in files.items()
        }
        if commit is None:
            digest = hashlib.sha1(repo_id.encode())
            for path in sorted(tree):
                digest.update(path.encode() + b"\0" + tree[path].blob_id.encode())
            digest.update(str(len(repo.commits)).encode())
            commit = digest.hexdigest()
        elif not _is_commit(commit):
            raise ValueError(f"commit must be 40 lowercase hex digits, got {commit!r}")
        repo.commits[commit] = tree
        if branch is not None:
            repo.refs[branch] = commit
        for tag in tags:
            repo.refs[tag] = commit
        for f in tree.values():
            if f.lfs:
                self.blobs[f.sha256] = f.content
        return commit

    def add_ref(self, repo_id: str, name: str, commit: str) -> None:
        """Point a branch or tag ``name`` of ``repo_id`` at an existing ``commit``."""
        repo = self.repos[repo_id]
        if commit not in repo.commits:
            raise KeyError(f"{repo_id} has no commit {commit}")
        repo.refs[name] = commit

    def add_archive(self, name: str, content: bytes) -> None:
        self.archives[name] = content

    def archive_url(self, name: str) -> str:
        return f"{self.cdn_url}/releases/{name}"

    def corrupt(self, sha256: str) -> None:
        self.corrupted.add(sha256)

    def stall(self, key: str, after_bytes: int) -> None:
        self.stalls[key] = after_bytes

    def content_requests(self) -> list[Request]:
        """GETs that transfer file content (not API or metadata calls)."""
        return [
            r
            for r in self.requests
            if r.method == "GET" and (r.server == "cdn" or "/resolve/" in r.path)
        ]

    # -- serving -------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    def start(self) -> "FakeHub":
        for role in ("hub", "cdn"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, role))
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        self._release.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _log(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)


def _is_commit(value: str) -> bool:
    return len(value) == 40 and all(ch in "0123456789abcdef" for ch in value)


def _handler(hub: FakeHub, role: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def do_HEAD(self):
            self._dispatch(head=True)

        def do_GET(self):
            self._dispatch(head=False)

        # -- helpers ---------------------------------------------------------
        def _json(self, status: int, body, headers=None, head=False):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if not head:
                self.wfile.write(data)

        def _error(self, status: int, code: str, message: str, head=False, extra=None):
            headers = {"X-Error-Code": code, "X-Error-Message": message, **(extra or {})}
            self._json(status, {"error": message}, headers, head)

        def _send_content(self, content: bytes, headers: dict, head: bool, key: str | None):
            total = len(content)
            rng = self.headers.get("Range")
            start = 0
            if rng and rng.startswith("bytes="):
                first = rng[len("bytes="):].split("-")[0]
                start = int(first) if first else 0
                if start >= total:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{total}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
            else:
                self.send_response(200)
            body = content[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if head:
                return
            stall = hub.stalls.pop(key, None) if key is not None and start == 0 else None
            if stall is not None:
                self.wfile.write(body[:stall])
                self.wfile.flush()
                hub.stalled.set()
                hub._release.wait(60)
                self.close_connection = True
                return
            self.wfile.write(body)

        def _dispatch(self, head: bool):
            path = urlsplit(self.path).path
            hub._log(Request(role, "HEAD" if head else "GET", unquote(path), self.headers.get("Range")))
            if role == "cdn":
                return self._cdn(path, head)
            if path.startswith("/api/models/"):
                return self._api(path[len("/api/models/"):], head)
            if "/resolve/" in path:
                return self._resolve(path, head)
            self._error(404, "RepoNotFound", f"no route {path}", head)

        def _repo_and_rest(self, path: str):
            parts = path.strip("/").split("/")
            return "/".join(parts[:2]), parts[2:]

        def _api(self, path: str, head: bool):
            repo_id, rest = self._repo_and_rest(path)
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", f"repository {repo_id} not found", head)
            if len(rest) >= 2 and rest[0] == "revision":
                commit = repo.resolve(unquote(rest[1]))
                if commit is None:
                    return self._error(404, "RevisionNotFound", f"invalid rev id: {rest[1]}", head)
                siblings = [{"rfilename": p} for p in sorted(repo.commits[commit])]
                return self._json(200, {"id": repo_id, "modelId": repo_id, "sha": commit, "siblings": siblings}, head=head)
            if len(rest) >= 2 and rest[0] == "tree":
                commit = repo.resolve(unquote(rest[1]))
                if commit is None:
                    return self._error(404, "RevisionNotFound", f"invalid rev id: {rest[1]}", head)
                under = unquote("/".join(rest[2:])).strip("/")  # path_in_repo: list only that folder
                entries, folders = [], set()
                for p, f in sorted(repo.commits[commit].items()):
                    if under and not p.startswith(under + "/"):
                        continue
                    parent = p.rsplit("/", 1)[0] if "/" in p else None
                    while parent and parent not in folders:
                        folders.add(parent)
                        entries.append({"type": "directory", "path": parent, "oid": "0" * 40, "size": 0})
                        parent = parent.rsplit("/", 1)[0] if "/" in parent else None
                    item = {"type": "file", "path": p, "size": len(f.content), "oid": f.blob_id}
                    if f.lfs:
                        item["lfs"] = {"oid": f.sha256, "size": len(f.content), "pointerSize": len(lfs_pointer(f.content))}
                    entries.append(item)
                return self._json(200, entries, head=head)
            return self._error(404, "RepoNotFound", "unknown API route", head)

        def _resolve(self, path: str, head: bool):
            before, _, after = path.strip("/").partition("/resolve/")
            repo_id = unquote(before)
            revision, _, filename = after.partition("/")
            revision, filename = unquote(revision), unquote(filename)
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", f"repository {repo_id} not found", head)
            commit = repo.resolve(revision)
            if commit is None:
                return self._error(404, "RevisionNotFound", f"invalid rev id: {revision}", head)
            f = repo.commits[commit].get(filename)
            if f is None:
                return self._error(404, "EntryNotFound", f"{filename} not found", head, {"X-Repo-Commit": commit})
            if f.lfs:
                self.send_response(302)
                self.send_header("Location", f"{hub.cdn_url}/cdn/{f.sha256}")
                self.send_header("X-Repo-Commit", commit)
                self.send_header("X-Linked-Etag", f'"{f.sha256}"')
                self.send_header("X-Linked-Size", str(len(f.content)))
                self.send_header("ETag", f'"{f.blob_id}"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            headers = {"ETag": f'"{f.blob_id}"', "X-Repo-Commit": commit, "Content-Type": "application/octet-stream"}
            self._send_content(f.content, headers, head, key=f.blob_id)

        def _cdn(self, path: str, head: bool):
            if path.startswith("/cdn/"):
                sha = path[len("/cdn/"):]
                content = hub.blobs.get(sha)
                if content is None:
                    return self._error(404, "EntryNotFound", "no such blob", head)
                if sha in hub.corrupted:
                    content = bytes(b ^ 0xFF for b in content[:16]) + content[16:]
                return self._send_content(content, {"ETag": f'"{sha}"'}, head, key=sha)
            if path.startswith("/releases/"):
                name = path[len("/releases/"):]
                content = hub.archives.get(name)
                if content is None:
                    return self._error(404, "EntryNotFound", "no such release asset", head)
                return self._send_content(content, {"Content-Type": "application/zip"}, head, key=name)
            self._error(404, "EntryNotFound", "unknown CDN route", head)

    return Handler
