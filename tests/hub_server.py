"""A small Hub-compatible HTTP server on 127.0.0.1, for offline upload/download tests (stdlib only).

It implements the endpoints that huggingface_hub's own client calls (checked against huggingface_hub 2.4:
`hf_api.py`, `_commit_api.py`, `_upload_pipeline.py`, `file_download.py`, `_snapshot_download.py`), so tests run the
real client code and only the server is local:

| client call | endpoint |
|---|---|
| `create_repo` | `POST /api/repos/create` (409 when it exists) |
| `create_branch` | `POST /api/{type}s/{repo}/branch/{branch}` (409 when it exists) |
| README metadata check in `create_commit` | `POST /api/validate-yaml` (the front matter must parse to a mapping) |
| `upload_folder` / `create_commit` | `POST /api/{type}s/{repo}/preupload/{rev}` then `POST /api/{type}s/{repo}/commit/{rev}` (NDJSON) |
| `model_info` / `dataset_info` / `repo_info` | `GET /api/{type}s/{repo}[/revision/{rev}]` |
| `list_repo_tree` / `list_repo_files` | `GET /api/{type}s/{repo}/tree/{rev}[/{path}]?recursive=...` |
| `list_repo_refs` | `GET /api/{type}s/{repo}/refs` |
| `hf_hub_download` / `snapshot_download` | `HEAD`/`GET /[datasets/]{repo}/resolve/{rev}/{path}` with `ETag`, `X-Repo-Commit`, `Content-Length` |

Uploads: by default the preupload answer sends **every file to "regular" mode**, so the client inlines the bytes
(base64) in the commit NDJSON. With `LocalHub(lfs=True)`, files matching `lfs_patterns` (`*.safetensors`,
`*.parquet`, ...) get "lfs" mode and the server speaks the Git LFS batch API with the `basic` transfer
(`POST /{repo}.git/info/lfs/objects/batch`, `PUT` of the bytes, `POST` verify), then accepts `lfsFile` commit lines;
downloads of those files carry the sha256 as ETag (`X-Linked-Etag`/`X-Linked-Size` too) and the tree lists their `lfs`
info, as on the Hub. The client only takes that path with `HF_HUB_DISABLE_XET=1`: with `hf_xet` installed, "lfs"
mode means Xet storage, which needs a Xet CAS server that this module does not implement.

Safety: binds 127.0.0.1 only (port 0 = a free port), refuses request bodies over `max_body_bytes`, and stops itself
after `lifetime_seconds` (a timer) even if a test forgets to. Write calls need `Authorization: Bearer <token>` when
`token` is set; the server records the tokens it saw (`seen_tokens`) so a test can check that the client sent the
right one, and a request log without any header values (`requests`).
"""

import base64
import fnmatch
import hashlib
import json
import re
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.parquet filter=lfs diff=lfs merge=lfs -text\n"


def _hub_date(dt: datetime) -> str:
    """The Hub's date format: `2024-01-31T12:00:00.000Z`."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob (what the Hub reports as `oid` / ETag for regular files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Repo:
    def __init__(self, repo_id: str, repo_type: str, private: bool):
        self.repo_id, self.repo_type, self.private = repo_id, repo_type, private
        # commit sha -> {"files": {path: bytes}, "lfs": {paths stored in LFS}, "parent", "title", "date"}
        self.commits: dict[str, dict] = {}
        self.branches: dict[str, str] = {}
        self.created_at = _hub_date(datetime.now(timezone.utc))
        self.branches["main"] = self._new_commit({".gitattributes": _GITATTRIBUTES}, set(), None, "initial commit")

    def _new_commit(self, files: dict, lfs: set, parent: str | None, title: str) -> str:
        seed = f"{self.repo_type}/{self.repo_id}/{parent}/{title}/{time.time_ns()}/{len(self.commits)}"
        sha = hashlib.sha1(seed.encode()).hexdigest()
        self.commits[sha] = {"files": files, "lfs": lfs, "parent": parent, "title": title, "date": datetime.now(timezone.utc)}  # fmt: skip
        return sha

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.commits:
            return revision
        return None


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class LocalHub:
    """In-memory Hub on `http://127.0.0.1:<port>`. Use as a context manager; `url` is the `HF_ENDPOINT` value.

    Args:
        token (`str`, *optional*): when set, write endpoints (and reads of private repos) require it.
        lifetime_seconds (`float`, *optional*, defaults to 600): the server shuts itself down after this long.
        max_body_bytes (`int`, *optional*, defaults to 256 MiB): larger request bodies get a 413.
        lfs (`bool`, *optional*, defaults to False): answer "lfs" upload mode for `lfs_patterns` (see module doc).
    """

    def __init__(
        self,
        token: str | None = None,
        lifetime_seconds: float = 600.0,
        max_body_bytes: int = 256 << 20,
        lfs: bool = False,
        lfs_patterns: tuple[str, ...] = ("*.safetensors", "*.parquet", "*.bin", "*.pt", "*.npy"),
    ):
        self.token = token
        self.lfs, self.lfs_patterns = lfs, lfs_patterns
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> bytes (verified uploads)
        self.lfs_pending: set[str] = set()  # oids announced by a batch call, not uploaded yet
        self.lifetime_seconds = lifetime_seconds
        self.max_body_bytes = max_body_bytes
        self.repos: dict[tuple[str, str], _Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path): no headers, no bodies
        self.seen_tokens: set[str] = set()
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # ---------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LocalHub":
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-hub", daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.lifetime_seconds, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> "LocalHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- helpers for tests
    def repo(self, repo_id: str, repo_type: str = "model") -> _Repo:
        return self.repos[(repo_type, repo_id)]

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        repo = self.repo(repo_id, repo_type)
        return dict(repo.commits[repo.resolve(revision)]["files"])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: LocalHub = None  # set on the per-server subclass
    server_version = "LocalHub/1.0"

    def log_message(self, format, *args):  # keep test output quiet; requests are recorded in hub.requests
        pass

    # ---------------------------------------------------------------- plumbing
    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head_only: bool = False):
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "application/json")
        headers["Content-Length"] = str(len(body))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body and not head_only:
            self.wfile.write(body)

    def _json(self, status: int, obj, headers: dict | None = None):
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, err: _HubError, head_only: bool = False):
        headers = {"X-Error-Message": err.message}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._send(err.status, json.dumps({"error": err.message}).encode(), headers, head_only=head_only)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                total += size
                if total > self.hub.max_body_bytes:
                    raise _HubError(413, "request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.hub.max_body_bytes:
            raise _HubError(413, "request body too large")
        return self.rfile.read(length) if length else b""

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
            with self.hub.lock:
                self.hub.seen_tokens.add(token)
            return token
        return None

    def _require_write(self):
        if self.hub.token is not None and self._token() != self.hub.token:
            raise _HubError(401, "Invalid credentials in Authorization header")

    def _get_repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and self.hub.token is not None and self._token() != self.hub.token):
            raise _HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def _resolve(self, repo: _Repo, revision: str) -> str:
        sha = repo.resolve(urllib.parse.unquote(revision))
        if sha is None:
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return sha

    def _dispatch(self, method: str):
        parsed = urllib.parse.urlsplit(self.path)
        path, query = parsed.path, urllib.parse.parse_qs(parsed.query)
        with self.hub.lock:
            self.hub.requests.append((method, path))
        head_only = method == "HEAD"
        try:
            self._route(method, path, query)
        except _HubError as err:
            self._error(err, head_only=head_only)
        except Exception as err:  # a server bug: answer 500 instead of hanging the client
            self._error(_HubError(500, f"{type(err).__name__}: {err}"), head_only=head_only)

    do_GET = lambda self: self._dispatch("GET")  # noqa: E731
    do_HEAD = lambda self: self._dispatch("HEAD")  # noqa: E731
    do_POST = lambda self: self._dispatch("POST")  # noqa: E731
    do_PUT = lambda self: self._dispatch("PUT")  # noqa: E731
    do_DELETE = lambda self: self._dispatch("DELETE")  # noqa: E731

    # ---------------------------------------------------------------- routes
    _API = re.compile(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)(?:/(.*))?$")
    _RESOLVE = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
    _LFS_BATCH = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+/[^/]+)\.git/info/lfs/objects/batch$")
    _LFS_OBJECT = re.compile(r"^/_lfs/(upload|verify)/([0-9a-f]{64})$")

    def _route(self, method: str, path: str, query: dict):
        if method == "POST" and path == "/api/repos/create":
            return self._create_repo()
        if method == "POST" and path == "/api/validate-yaml":
            return self._validate_yaml()
        m = self._API.match(path)
        if m:
            repo_type, repo_id, rest = _REPO_TYPES[m.group(1)], m.group(2), m.group(3) or ""
            repo = self._get_repo(repo_type, repo_id)
            if method == "GET" and rest == "":
                return self._info(repo, "main")
            if method == "GET" and rest.startswith("revision/"):
                return self._info(repo, rest[len("revision/") :])
            if method == "GET" and rest == "refs":
                return self._json(200, {"branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": s} for b, s in repo.branches.items()], "converts": [], "tags": []})  # fmt: skip
            if method == "GET" and rest.startswith("tree/"):
                rev, _, sub = rest[len("tree/") :].partition("/")
                return self._tree(repo, rev, urllib.parse.unquote(sub), query.get("recursive", ["false"])[0] in ("true", "True", "1"))  # fmt: skip
            if method == "POST" and rest.startswith("preupload/"):
                self._require_write()
                return self._preupload(repo, rest[len("preupload/") :])
            if method == "POST" and rest.startswith("commit/"):
                self._require_write()
                return self._commit(repo, rest[len("commit/") :])
            if method == "POST" and rest.startswith("branch/"):
                self._require_write()
                return self._create_branch(repo, urllib.parse.unquote(rest[len("branch/") :]))
            raise _HubError(404, f"not implemented by the local hub: {method} {path}")
        m = self._LFS_BATCH.match(path)
        if m and method == "POST":
            self._require_write()
            repo_type = {"datasets": "dataset", "spaces": "space", None: "model"}[m.group(1)]
            self._get_repo(repo_type, m.group(2))
            return self._lfs_batch()
        m = self._LFS_OBJECT.match(path)
        if m and method == "PUT" and m.group(1) == "upload":
            return self._lfs_put(m.group(2))  # like a presigned storage URL: no Hub token on this request
        if m and method == "POST" and m.group(1) == "verify":
            self._require_write()
            return self._lfs_verify(m.group(2))
        m = self._RESOLVE.match(path)
        if m and method in ("GET", "HEAD"):
            repo_type = {"datasets": "dataset", "spaces": "space", None: "model"}[m.group(1)]
            repo = self._get_repo(repo_type, m.group(2))
            return self._resolve_file(repo, m.group(3), urllib.parse.unquote(m.group(4)), head_only=method == "HEAD")
        raise _HubError(404, f"not implemented by the local hub: {method} {path}")

    def _create_repo(self):
        self._require_write()
        payload = json.loads(self._body() or b"{}")
        name, org = payload.get("name"), payload.get("organization")
        repo_type = payload.get("type") or "model"
        if not name or not re.fullmatch(r"[\w.-]+", name) or (org and not re.fullmatch(r"[\w.-]+", org)):
            raise _HubError(400, f"invalid repo name {name!r}")
        repo_id = f"{org or 'user'}/{name}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        url = f"{self.hub.url}/{_TYPE_PREFIX[repo_type]}{repo_id}"
        with self.hub.lock:
            if (repo_type, repo_id) in self.hub.repos:
                return self._json(409, {"error": "You already created this repo", "url": url})
            self.hub.repos[(repo_type, repo_id)] = _Repo(repo_id, repo_type, private)
        self._json(200, {"url": url, "name": repo_id})

    def _validate_yaml(self):
        import yaml

        payload = json.loads(self._body() or b"{}")
        content = payload.get("content", "")
        match = re.match(r"^\s*---\r?\n(.*?)\r?\n---\s*(\r?\n|$)", content, re.DOTALL)
        errors = []
        if match:
            try:
                meta = yaml.safe_load(match.group(1))
                if meta is not None and not isinstance(meta, dict):
                    errors.append({"message": "metadata must be a YAML mapping"})
            except yaml.YAMLError as e:
                errors.append({"message": f"invalid YAML: {e}"})
        self._json(400 if errors else 200, {"errors": errors, "warnings": []})

    def _info(self, repo: _Repo, revision: str):
        sha = self._resolve(repo, revision)
        commit = repo.commits[sha]
        self._json(
            200,
            {
                "id": repo.repo_id,
                "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
                "author": repo.repo_id.split("/")[0],
                "sha": sha,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "createdAt": repo.created_at,
                "lastModified": _hub_date(commit["date"]),
                "tags": [],
                "siblings": [{"rfilename": p} for p in sorted(commit["files"])],
            },
        )

    def _tree(self, repo: _Repo, revision: str, sub: str, recursive: bool):
        sha = self._resolve(repo, revision)
        files = repo.commits[sha]["files"]
        prefix = sub.strip("/") + "/" if sub.strip("/") else ""
        entries, folders = [], set()
        for p in sorted(files):
            if not p.startswith(prefix):
                continue
            rel = p[len(prefix) :]
            parts = rel.split("/")
            for i in range(1, len(parts)):
                folder = prefix + "/".join(parts[:i])
                if (recursive or i == 1) and folder not in folders:
                    folders.add(folder)
                    entries.append(
                        {"type": "directory", "path": folder, "oid": hashlib.sha1(folder.encode()).hexdigest()}
                    )
            if recursive or len(parts) == 1:
                data = files[p]
                entry = {"type": "file", "path": p, "size": len(data), "oid": git_blob_sha1(data)}
                if p in repo.commits[sha]["lfs"]:
                    entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                entries.append(entry)
        if prefix and not entries:
            raise _HubError(404, f"path {sub} not found", "EntryNotFound")
        self._json(200, entries)

    def _preupload(self, repo: _Repo, revision: str):
        payload = json.loads(self._body() or b"{}")
        sha = repo.resolve(urllib.parse.unquote(revision))
        current = repo.commits[sha]["files"] if sha else {}
        out = []
        lfs_paths = repo.commits[sha]["lfs"] if sha else set()
        for f in payload.get("files", []):
            existing = current.get(f["path"])
            lfs = self.hub.lfs and any(fnmatch.fnmatch(f["path"], p) for p in self.hub.lfs_patterns)
            oid = None
            if existing is not None:
                oid = hashlib.sha256(existing).hexdigest() if f["path"] in lfs_paths else git_blob_sha1(existing)
            out.append(
                {
                    "path": f["path"],
                    "uploadMode": "lfs" if lfs else "regular",  # regular: inline base64 in the commit
                    "shouldIgnore": False,
                    "oid": oid,
                }
            )
        self._json(200, {"files": out, "commitOid": sha})

    def _commit(self, repo: _Repo, revision: str):
        branch = urllib.parse.unquote(revision)
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise _HubError(400, "commit payload must start with a header line")
        header = lines[0]["value"]
        with self.hub.lock:
            if branch not in repo.branches:
                raise _HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            parent = repo.branches[branch]
            if header.get("parentCommit") and header["parentCommit"] != parent:
                raise _HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(repo.commits[parent]["files"])
            lfs_paths = set(repo.commits[parent]["lfs"])
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                if key == "file":
                    if value.get("encoding") != "base64":
                        raise _HubError(400, "only base64 file content is supported")
                    files[value["path"]] = base64.b64decode(value["content"])
                    lfs_paths.discard(value["path"])
                elif key == "lfsFile":
                    data = self.hub.lfs_objects.get(value.get("oid"))
                    if data is None or len(data) != value.get("size"):
                        raise _HubError(400, f"LFS object {value.get('oid')} of {value.get('path')} was not uploaded")
                    files[value["path"]] = data
                    lfs_paths.add(value["path"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                    lfs_paths.discard(value["path"])
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {p: d for p, d in files.items() if not p.startswith(folder)}
                    lfs_paths = {p for p in lfs_paths if p in files}
                else:
                    raise _HubError(400, f"commit operation {key!r} not supported by the local hub")
            sha = repo._new_commit(files, lfs_paths, parent, header.get("summary", ""))
            repo.branches[branch] = sha
        prefix = _TYPE_PREFIX[repo.repo_type]
        self._json(200, {"success": True, "commitOid": sha, "commitUrl": f"{self.hub.url}/{prefix}{repo.repo_id}/commit/{sha}", "pullRequestUrl": None})  # fmt: skip

    def _create_branch(self, repo: _Repo, branch: str):
        payload = json.loads(self._body() or b"{}")
        with self.hub.lock:
            if branch in repo.branches:
                raise _HubError(409, f"Reference already exists: refs/heads/{branch}")
            start = payload.get("startingPoint") or "main"
            sha = repo.resolve(start)
            if sha is None:
                raise _HubError(404, f"Invalid rev id: {start}", "RevisionNotFound")
            repo.branches[branch] = sha
        self._json(200, {})

    def _resolve_file(self, repo: _Repo, revision: str, path: str, head_only: bool):
        sha = self._resolve(repo, revision)
        files = repo.commits[sha]["files"]
        if path not in files:
            raise _HubError(404, f"Entry not found: {path}", "EntryNotFound")
        data = files[path]
        etag = hashlib.sha256(data).hexdigest() if path in repo.commits[sha]["lfs"] else git_blob_sha1(data)
        headers = {"Content-Type": "application/octet-stream", "ETag": f'"{etag}"', "X-Repo-Commit": sha, "Accept-Ranges": "bytes"}  # fmt: skip
        if path in repo.commits[sha]["lfs"]:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))})
        status = 200
        range_header = self.headers.get("Range")
        if range_header and not head_only:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
            if m:
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else len(data) - 1
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                data, status = data[start : end + 1], 206
        if head_only:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return
        self._send(status, data, headers)

    # ---------------------------------------------------------------- Git LFS (basic transfer)
    def _lfs_batch(self):
        payload = json.loads(self._body() or b"{}")
        if payload.get("operation") != "upload":
            raise _HubError(400, "only LFS uploads are supported")
        if "basic" not in (payload.get("transfers") or ["basic"]):
            raise _HubError(400, "only the basic LFS transfer is supported")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj["oid"], obj["size"]
            if oid in self.hub.lfs_objects:
                objects.append({"oid": oid, "size": size})  # already stored: no actions
                continue
            with self.hub.lock:
                self.hub.lfs_pending.add(oid)
            objects.append(
                {
                    "oid": oid,
                    "size": size,
                    "authenticated": True,
                    "actions": {
                        "upload": {"href": f"{self.hub.url}/_lfs/upload/{oid}"},
                        "verify": {"href": f"{self.hub.url}/_lfs/verify/{oid}"},
                    },
                }
            )
        self._json(200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"})

    def _lfs_put(self, oid: str):
        if oid not in self.hub.lfs_pending:
            raise _HubError(403, "upload not announced by a batch call")
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            raise _HubError(400, "sha256 mismatch")
        with self.hub.lock:
            self.hub.lfs_objects[oid] = data
            self.hub.lfs_pending.discard(oid)
        self._send(200, b"", {"Content-Type": "text/plain"})

    def _lfs_verify(self, oid: str):
        payload = json.loads(self._body() or b"{}")
        data = self.hub.lfs_objects.get(oid)
        if data is None or payload.get("oid") != oid or payload.get("size") != len(data):
            raise _HubError(404, f"LFS object {oid} not found")
        self._json(200, {"success": True})


__all__ = ["LocalHub", "git_blob_sha1"]
