"""A Hugging Face Hub stand-in on loopback, for testing uploads without the internet.

Implements the parts of the Hub's HTTP API that `huggingface_hub` 2.4 (LFS path, i.e. with
HF_HUB_DISABLE_XET=1: the stand-in does not speak Xet, and never advertises it) and
`bf-pipeline upload` use:

  GET  /api/whoami-v2
  POST /api/repos/create                      {name, organization, type, private|visibility}; 409 if it exists
  POST /api/validate-yaml                     (always valid)
  GET  /api/{models|datasets}/{repo}[/revision/{rev}]      repo info: sha, siblings (blobs=true: sizes, lfs)
  GET  /api/{models|datasets}/{repo}/tree/{rev}[/{path}]   ?recursive= (no pagination)
  POST /api/{models|datasets}/{repo}/paths-info/{rev}      form: paths=…
  POST /api/{models|datasets}/{repo}/preupload/{rev}       uploadMode lfs|regular, shouldIgnore, oid
  POST /api/{models|datasets}/{repo}/commit/{rev}          NDJSON: header, file (base64), lfsFile, deletedFile
  POST /{datasets/}{repo}.git/info/lfs/objects/batch       basic below `multipart_threshold`, else multipart
                                                           (`chunk_size`, numbered part URLs); verify action
  PUT  /lfs/basic/{upload_id}, PUT /lfs/part/{upload_id}/{n} (ETag = md5 of the part),
  POST /lfs/complete/{upload_id}                           {oid, parts: [{partNumber, etag}]}, sha256 checked
  POST /lfs/verify/{oid}
  GET|HEAD /{datasets/}{repo}/resolve/{rev}/{path}         X-Repo-Commit, ETag / X-Linked-Etag (sha256 for
                                                           LFS), X-Linked-Size, Content-Length, Range

Repositories live in memory (commits with sha1-like ids, files by path, LFS objects by oid).
Authorization: a `Bearer` token other than the accepted one gets 401 on every endpoint, no token
gets 401 on writes (and on reads of private repos). Test hooks: `counts` (requests per kind),
`lfs_bytes` (bytes received by LFS PUTs), `faults` (make the N-th request of a kind fail with a
status or a dropped connection), `block_after(kind, n)` (hold requests of a kind after the n-th,
to kill a client mid-upload deterministically).

It is checked against the official client in tests/oracle/test_upload.py (create_repo,
upload_folder with an LFS multipart file, list_repo_files, snapshot_download must work on it
unmodified through HF_ENDPOINT) before our uploader is tested on it.

Standalone: `python tests/hubstub/hubstub.py --port 8080 --token hf_test` serves until Ctrl-C.
"""
import base64
import hashlib
import json
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_PATTERNS = re.compile(r"\.(parquet|arrow|bin|safetensors|pt|pth|ckpt|h5|npy|npz|onnx|zip|gz|tar|msgpack|pkl|model)$")
GITATTRIBUTES = b"".join(
    f"*.{ext} filter=lfs diff=lfs merge=lfs -text\n".encode()
    for ext in ["parquet", "arrow", "bin", "safetensors", "pt", "pth", "ckpt", "h5", "npy", "npz", "onnx", "zip", "gz", "tar", "msgpack", "pkl", "model"])


def git_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid, size):
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


class Repo:
    def __init__(self, kind, repo_id, private):
        self.kind, self.repo_id, self.private = kind, repo_id, private
        self.commits = {}          # id -> {"parent", "files", "summary"}
        self.branches = {}         # name -> commit id

    def resolve(self, rev):
        if rev in self.branches:
            return self.branches[rev]
        if rev in self.commits:
            return rev
        return None


class HubStub:
    """The server state and its hooks; `start()` serves on a free loopback port."""

    def __init__(self, token="hf_stub_token", user="user", multipart_threshold=8 << 20, chunk_size=1 << 20,
                 lfs_threshold=10 << 20):
        self.token, self.user = token, user
        self.multipart_threshold, self.chunk_size, self.lfs_threshold = multipart_threshold, chunk_size, lfs_threshold
        self.repos = {}            # (kind, repo_id) -> Repo
        self.lfs = {}              # oid -> bytes
        self.uploads = {}          # upload_id -> {"oid", "size", "parts": {n: bytes}}
        self.lock = threading.RLock()
        self.counts = {}
        self.lfs_bytes = 0
        self.faults = []           # dicts: kind, nth (1-based count of that kind), action ("drop" | status int)
        self._blocks = {}          # kind -> (n, reached Event, release Event)
        self.server = None
        self.url = None

    # ---- hooks -------------------------------------------------------------------------
    def reset_counts(self):
        with self.lock:
            self.counts, self.lfs_bytes = {}, 0

    def fail(self, kind, nth, action, times=1):
        """Make the nth request of `kind` (counted from now) and the `times - 1` after it fail:
        action 'drop' (connection closed without an answer) or an HTTP status."""
        with self.lock:
            first = self.counts.get(kind, 0) + nth
            self.faults.extend({"kind": kind, "nth": first + i, "action": action} for i in range(times))

    def block_after(self, kind, n):
        """Requests of `kind` after the n-th (from now) wait until `release()`; returns an Event set
        when the first one is held."""
        reached, release = threading.Event(), threading.Event()
        with self.lock:
            self._blocks[kind] = (self.counts.get(kind, 0) + n, reached, release)
        return reached

    def release(self):
        with self.lock:
            blocks, self._blocks = self._blocks, {}
        for _, _, release in blocks.values():
            release.set()

    def commit_count(self, kind, repo_id):
        repo = self.repos.get((kind, repo_id))
        return 0 if repo is None else len(repo.commits)

    def files(self, kind, repo_id, rev="main"):
        """{path: bytes} of a revision (LFS contents resolved)."""
        repo = self.repos[(kind, repo_id)]
        out = {}
        for path, entry in repo.commits[repo.resolve(rev)]["files"].items():
            out[path] = self.lfs[entry["oid"]] if entry["lfs"] else entry["content"]
        return out

    # ---- server --------------------------------------------------------------------------
    def start(self):
        stub = self

        class Handler(_Handler):
            hub = stub

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.release()
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # ---- state changes -------------------------------------------------------------------
    def create_repo(self, kind, repo_id, private):
        with self.lock:
            if (kind, repo_id) in self.repos:
                return False
            repo = Repo(kind, repo_id, private)
            self.repos[(kind, repo_id)] = repo
            self._commit(repo, "main", None, "initial commit",
                         [("file", ".gitattributes", GITATTRIBUTES)])
            return True

    def _commit(self, repo, branch, parent, summary, ops):
        files = dict(repo.commits[parent]["files"]) if parent else {}
        for op, path, value in ops:
            if op == "file":
                files[path] = {"lfs": False, "content": value, "oid": git_sha1(value), "size": len(value)}
            elif op == "lfs":
                oid, size = value
                files[path] = {"lfs": True, "oid": oid, "size": size, "blob": git_sha1(lfs_pointer(oid, size))}
            elif op == "delete":
                files.pop(path, None)
                for p in [p for p in files if p.startswith(path.rstrip("/") + "/")]:
                    files.pop(p)
        cid = hashlib.sha1(json.dumps([parent, summary, time.time_ns(), sorted(
            (p, e["oid"]) for p, e in files.items())]).encode()).hexdigest()
        repo.commits[cid] = {"parent": parent, "files": files, "summary": summary}
        repo.branches[branch] = cid
        return cid


def _tree_entry(path, e):
    d = {"type": "file", "oid": e["blob"] if e["lfs"] else e["oid"], "size": e["size"], "path": path}
    if e["lfs"]:
        d["lfs"] = {"oid": e["oid"], "size": e["size"], "pointerSize": len(lfs_pointer(e["oid"], e["size"]))}
    return d


class _Drop(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    hub: HubStub = None
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    # ---- plumbing ---------------------------------------------------------------------------
    def _body(self):
        if getattr(self, "_body_cache", None) is None:
            n = int(self.headers.get("Content-Length") or 0)
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    data += self.rfile.read(size)
                    self.rfile.readline()
                self._body_cache = data
            else:
                self._body_cache = self.rfile.read(n) if n else b""
        return self._body_cache

    def _send(self, status, body=b"", headers=None, content_type="application/json"):
        self._body()  # an unread request body would corrupt the next request on this connection
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status, message, code=None):
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, {"error": message}, headers)

    def _auth(self):
        """'ok' (good token), None (no token), or sends 401 and returns False."""
        h = self.headers.get("Authorization")
        if h is None:
            return None
        if h == f"Bearer {self.hub.token}":
            return "ok"
        self._error(401, "Invalid credentials in Authorization header")
        return False

    def _count(self, kind):
        """Counts the request; applies faults and blocks. Returns False when it answered."""
        hub = self.hub
        with hub.lock:
            n = hub.counts[kind] = hub.counts.get(kind, 0) + 1
            fault = next((f for f in hub.faults if f["kind"] == kind and f["nth"] == n), None)
            if fault:
                hub.faults.remove(fault)   # fires once, whatever reset_counts() does later
            block = hub._blocks.get(kind)
        if block and n > block[0]:
            block[1].set()
            block[2].wait(60)
            self._body()
            self._error(503, "stand-in: held request released")
            return False
        if fault:
            self._body()
            if fault["action"] == "drop":
                raise _Drop()
            status = fault["action"]
            headers = {"X-Error-Message": f"stand-in: injected {status}"}
            if status == 429:
                headers["Retry-After"] = "1"
            self._send(status, {"error": f"stand-in: injected {status}"}, headers)
            return False
        return True

    def _dispatch(self):
        self._body_cache = None  # one handler serves every request of a keep-alive connection
        try:
            self._route()
        except _Drop:
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
        except BrokenPipeError:
            pass

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _dispatch

    # ---- routing ---------------------------------------------------------------------------
    def _route(self):
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        m, hub = self.command, self.hub
        auth = self._auth()
        if auth is False:
            return
        if path == "/api/whoami-v2":
            if auth != "ok":
                return self._error(401, "Invalid username or password.")
            return self._send(200, {"type": "user", "name": hub.user, "fullname": hub.user, "orgs": [],
                                    "auth": {"type": "access_token", "accessToken": {"displayName": "stub", "role": "write"}}})
        if path == "/api/validate-yaml":
            self._body()
            return self._send(200, {"errors": [], "warnings": []})
        if path == "/api/repos/create" and m == "POST":
            if not self._count("create"):
                return
            payload = json.loads(self._body() or b"{}")
            if auth != "ok":
                return self._error(401, "You must be authenticated to create a repo")
            kind = payload.get("type") or "model"
            repo_id = f"{payload.get('organization') or hub.user}/{payload['name']}"
            private = bool(payload.get("private")) or payload.get("visibility") == "private"
            prefix = "" if kind == "model" else f"{kind}s/"
            if not hub.create_repo(kind, repo_id, private):
                # The Hub's 409 carries the URL: create_repo(exist_ok=True) reads it.
                return self._send(409, {"error": "You already created this repo", "url": f"{hub.url}/{prefix}{repo_id}"},
                                  {"X-Error-Message": "You already created this repo"})
            return self._send(200, {"url": f"{hub.url}/{prefix}{repo_id}", "name": repo_id, "id": repo_id})
        if path.startswith("/lfs/"):
            return self._lfs_storage(path)
        m_api = re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)(?:/(.*))?", path)
        if m_api:
            kind = m_api.group(1)[:-1]
            return self._api(kind, m_api.group(2), m_api.group(3) or "", query, auth)
        m_lfs = re.fullmatch(r"/(datasets/)?([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
        if m_lfs and m == "POST":
            return self._lfs_batch("dataset" if m_lfs.group(1) else "model", m_lfs.group(2), auth)
        m_res = re.fullmatch(r"/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m_res and m in ("GET", "HEAD"):
            return self._resolve("dataset" if m_res.group(1) else "model", m_res.group(2), unquote(m_res.group(3)),
                                 unquote(m_res.group(4)), auth)
        self._body()
        return self._error(404, f"stand-in: no route for {m} {path}")

    def _repo(self, kind, repo_id, auth, write=False):
        repo = self.hub.repos.get((kind, repo_id))
        if write and auth != "ok":
            self._error(401, "Invalid username or password.")
            return None
        if repo is None or (repo.private and auth != "ok"):
            self._error(404 if auth == "ok" else 401, "Repository not found", code="RepoNotFound")
            return None
        return repo

    def _commit_id(self, repo, rev):
        cid = repo.resolve(unquote(rev))
        if cid is None:
            self._error(404, f"Invalid rev id: {unquote(rev)}", code="RevisionNotFound")
        return cid

    def _api(self, kind, repo_id, rest, query, auth):
        hub, m = self.hub, self.command
        if rest == "" or rest.startswith("revision/"):
            repo = self._repo(kind, repo_id, auth)
            if not repo:
                return
            cid = self._commit_id(repo, rest[len("revision/"):] if rest else "main")
            if not cid:
                return
            files = repo.commits[cid]["files"]
            blobs = query.get("blobs", ["false"])[0].lower() == "true"
            siblings = []
            for p in sorted(files):
                s = {"rfilename": p}
                if blobs:
                    e = files[p]
                    s.update({"size": e["size"], "blobId": e["blob"] if e["lfs"] else e["oid"]})
                    if e["lfs"]:
                        s["lfs"] = {"sha256": e["oid"], "size": e["size"], "pointerSize": len(lfs_pointer(e["oid"], e["size"]))}
                siblings.append(s)
            return self._send(200, {"_id": repo_id, "id": repo_id, "author": repo_id.split("/")[0], "sha": cid,
                                    "private": repo.private, "disabled": False, "gated": False, "downloads": 0,
                                    "likes": 0, "tags": [], "siblings": siblings,
                                    "lastModified": "2025-01-01T00:00:00.000Z", "createdAt": "2025-01-01T00:00:00.000Z"})
        op, _, tail = rest.partition("/")
        rev, _, sub = tail.partition("/")
        if op == "tree" and m == "GET":
            repo = self._repo(kind, repo_id, auth)
            cid = repo and self._commit_id(repo, rev)
            if not cid:
                return
            files = repo.commits[cid]["files"]
            base = unquote(sub).strip("/")
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            entries, dirs = [], set()
            for p in sorted(files):
                if base and not p.startswith(base + "/"):
                    continue
                rel = p[len(base) + 1:] if base else p
                segs = rel.split("/")
                for i in range(1, len(segs)):
                    d = "/".join(([base] if base else []) + segs[:i])
                    if (recursive or i == 1) and d not in dirs:
                        dirs.add(d)
                        entries.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d})
                if recursive or len(segs) == 1:
                    entries.append(_tree_entry(p, files[p]))
            if base and not entries:
                return self._error(404, f"{base} does not exist", code="EntryNotFound")
            return self._send(200, entries)
        if op == "paths-info" and m == "POST":
            repo = self._repo(kind, repo_id, auth)
            cid = repo and self._commit_id(repo, rev)
            if not cid:
                return
            form = parse_qs(self._body().decode())
            files = repo.commits[cid]["files"]
            out = []
            for p in form.get("paths", []):
                if p in files:
                    out.append(_tree_entry(p, files[p]))
                elif any(f.startswith(p.rstrip("/") + "/") for f in files):
                    out.append({"type": "directory", "oid": hashlib.sha1(p.encode()).hexdigest(), "size": 0, "path": p})
            return self._send(200, out)
        if op == "preupload" and m == "POST":
            if not self._count("preupload"):
                return
            payload = json.loads(self._body())
            repo = self._repo(kind, repo_id, auth, write=True)
            cid = repo and self._commit_id(repo, rev)
            if not cid:
                return
            files = repo.commits[cid]["files"]
            out = []
            for f in payload["files"]:
                sample = base64.b64decode(f["sample"])
                lfs = bool(LFS_PATTERNS.search(f["path"])) or f["size"] >= hub.lfs_threshold or b"\0" in sample
                e = files.get(f["path"])
                out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                            "oid": e["oid"] if e else None})
            return self._send(200, {"files": out, "commitOid": cid})
        if op == "commit" and m == "POST":
            if not self._count("commit"):
                return
            body = self._body()
            repo = self._repo(kind, repo_id, auth, write=True)
            if not repo:
                return
            branch = unquote(rev)
            if branch not in repo.branches:
                return self._error(404, f"Invalid rev id: {branch}", code="RevisionNotFound")
            if "x-ndjson" not in self.headers.get("Content-Type", ""):
                return self._error(400, "expected application/x-ndjson")
            lines = [json.loads(l) for l in body.decode().splitlines() if l.strip()]
            if not lines or lines[0].get("key") != "header":
                return self._error(400, "first line must be the header")
            header, ops = lines[0]["value"], []
            if header.get("parentCommit") and header["parentCommit"] != repo.branches[branch]:
                return self._error(412, "parentCommit is not the head of the branch")
            for line in lines[1:]:
                k, v = line["key"], line["value"]
                if k == "file":
                    ops.append(("file", v["path"], base64.b64decode(v["content"])))
                elif k == "lfsFile":
                    if v["oid"] not in hub.lfs or len(hub.lfs[v["oid"]]) != v["size"]:
                        return self._error(422, f"LFS object {v['oid']} ({v['path']}) was not uploaded")
                    ops.append(("lfs", v["path"], (v["oid"], v["size"])))
                elif k in ("deletedFile", "deletedFolder"):
                    ops.append(("delete", v["path"], None))
                else:
                    return self._error(400, f"unknown key {k}")
            with hub.lock:
                cid = hub._commit(repo, branch, repo.branches[branch], header.get("summary", ""), ops)
            prefix = "" if kind == "model" else "datasets/"
            return self._send(200, {"success": True, "commitOid": cid, "commitUrl": f"{hub.url}/{prefix}{repo_id}/commit/{cid}",
                                    "hookOutput": ""})
        self._body()
        return self._error(404, f"stand-in: no route for {m} /api/{kind}s/{repo_id}/{rest}")

    def _lfs_batch(self, kind, repo_id, auth):
        hub = self.hub
        if not self._count("batch"):
            return
        payload = json.loads(self._body())
        repo = self._repo(kind, repo_id, auth, write=True)
        if not repo:
            return
        if payload.get("operation") != "upload" or payload.get("hash_algo", "sha256") != "sha256":
            return self._error(422, "only sha256 uploads are supported")
        transfers = payload.get("transfers") or ["basic"]
        objects = []
        for o in payload["objects"]:
            oid, size = o["oid"], o["size"]
            if oid in hub.lfs:
                objects.append({"oid": oid, "size": size})
                continue
            upload_id = secrets.token_hex(8)
            with hub.lock:
                hub.uploads[upload_id] = {"oid": oid, "size": size, "parts": {}}
            verify = {"href": f"{hub.url}/lfs/verify/{oid}", "header": {}}
            if size > hub.multipart_threshold and "multipart" in transfers:
                n = -(-size // hub.chunk_size)
                header = {"chunk_size": str(hub.chunk_size)}
                header.update({str(i): f"{hub.url}/lfs/part/{upload_id}/{i}" for i in range(1, n + 1)})
                actions = {"upload": {"href": f"{hub.url}/lfs/complete/{upload_id}", "header": header}, "verify": verify}
            else:
                actions = {"upload": {"href": f"{hub.url}/lfs/basic/{upload_id}"}, "verify": verify}
            objects.append({"oid": oid, "size": size, "authenticated": True, "actions": actions})
        chosen = "multipart" if "multipart" in transfers else "basic"
        return self._send(200, {"transfer": chosen, "objects": objects, "hash_algo": "sha256"},
                          content_type="application/vnd.git-lfs+json")

    def _lfs_storage(self, path):
        hub, m = self.hub, self.command
        segs = path.strip("/").split("/")
        if segs[1] == "verify" and m == "POST":
            self._body()
            return self._send(200, {}) if segs[2] in hub.lfs else self._error(404, "object not found")
        up = hub.uploads.get(segs[2]) if len(segs) > 2 else None
        if up is None:
            self._body()
            return self._error(404, "unknown or finished upload")
        if segs[1] == "basic" and m == "PUT":
            if not self._count("basic_put"):
                return
            data = self._body()
            with hub.lock:
                hub.lfs_bytes += len(data)
            if hashlib.sha256(data).hexdigest() != up["oid"] or len(data) != up["size"]:
                return self._error(400, "content does not match the oid")
            with hub.lock:
                hub.lfs[up["oid"]] = data
                hub.uploads.pop(segs[2], None)
            return self._send(200, b"", {"ETag": f'"{hashlib.md5(data).hexdigest()}"'})
        if segs[1] == "part" and m == "PUT":
            if not self._count("part_put"):
                return
            data = self._body()
            with hub.lock:
                hub.lfs_bytes += len(data)
                up["parts"][int(segs[3])] = data
            return self._send(200, b"", {"ETag": f'"{hashlib.md5(data).hexdigest()}"'})
        if segs[1] == "complete" and m == "POST":
            if not self._count("complete"):
                return
            payload = json.loads(self._body())
            parts = sorted(payload["parts"], key=lambda p: p["partNumber"])
            try:
                data = b"".join(up["parts"][p["partNumber"]] for p in parts)
            except KeyError as e:
                return self._error(400, f"part {e} was not uploaded")
            if any(p["etag"] != f'"{hashlib.md5(up["parts"][p["partNumber"]]).hexdigest()}"' for p in parts):
                return self._error(400, "an ETag does not match its part")
            if payload.get("oid") != up["oid"] or hashlib.sha256(data).hexdigest() != up["oid"] or len(data) != up["size"]:
                return self._error(400, "assembled content does not match the oid")
            with hub.lock:
                hub.lfs[up["oid"]] = data
                hub.uploads.pop(segs[2], None)
            return self._send(200, {})
        self._body()
        return self._error(405, "method not allowed")

    def _resolve(self, kind, repo_id, rev, path, auth):
        hub = self.hub
        self._count("resolve_" + self.command.lower())
        repo = self._repo(kind, repo_id, auth)
        if not repo:
            return
        cid = self._commit_id(repo, rev)
        if not cid:
            return
        e = repo.commits[cid]["files"].get(path)
        if e is None:
            return self._error(404, f"Entry not found: {path}", code="EntryNotFound")
        data = hub.lfs[e["oid"]] if e["lfs"] else e["content"]
        headers = {"X-Repo-Commit": cid, "ETag": f'"{e["oid"]}"', "Accept-Ranges": "bytes"}
        if e["lfs"]:
            headers.update({"X-Linked-Etag": f'"{e["oid"]}"', "X-Linked-Size": str(e["size"]), "ETag": f'"{e["blob"]}"'})
        status = 200
        rng = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if rng:
            start = int(rng.group(1))
            end = int(rng.group(2)) if rng.group(2) else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start:end + 1], 206
        return self._send(status, data, headers, content_type="application/octet-stream")


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--token", default="hf_stub_token")
    ap.add_argument("--chunk-size", type=int, default=1 << 20)
    ap.add_argument("--multipart-threshold", type=int, default=8 << 20)
    a = ap.parse_args()
    stub = HubStub(token=a.token, chunk_size=a.chunk_size, multipart_threshold=a.multipart_threshold)
    Handler = type("Handler", (_Handler,), {"hub": stub})
    stub.server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    stub.url = f"http://127.0.0.1:{stub.server.server_address[1]}"
    print(f"Hub stand-in on {stub.url} (HF_ENDPOINT={stub.url} HF_TOKEN={a.token} HF_HUB_DISABLE_XET=1)", flush=True)
    stub.server.serve_forever()


if __name__ == "__main__":
    main()
