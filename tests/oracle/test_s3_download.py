"""The OpenNeuro/S3 source (`bf_pipeline::source`) against a real S3 server on loopback.

The server is moto's (`moto[server]`, ThreadedMotoServer). Between the downloader and moto sits a
small HTTP proxy written here that logs every request (method, path, query, Range header) and
injects faults on demand: a connection cut after N bytes followed by the server going down,
5xx answers, 404 for one object, 403 AccessDenied for everything.

The downloader runs through `bf-pipeline download` (the download half of `bf-pipeline ingest`,
release build from `make setup`). Every test is independent: each gets its own destination
folder and a clean proxy log.
"""
import http.client
import contextlib
import json
import os
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

from conftest import bin_path, reset_moto

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "openneuro.org"
PRIVATE_BUCKET = "private.bucket"
DS = "ds000117"
DS_MANY = "ds009999"  # the pagination fixture: 1100 keys under derivatives/many/
N_MANY = 1100
MULTIPART_KEY = "sub-01/ses-meg/meg/sub-01_ses-meg_task-facerecognition_run-03_meg.fif"
BIG_KEY = "sub-02/ses-meg/meg/sub-02_ses-meg_task-facerecognition_run-01_meg.fif"

boto3 = pytest.importorskip("boto3", reason="pip install 'moto[server]' boto3 (requirements.txt)")
moto_server = pytest.importorskip("moto.server", reason="pip install 'moto[server]' (requirements.txt)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fixture_tree():
    """A small ds000117-like tree: relative key → bytes (deterministic)."""
    rng = np.random.default_rng(117)
    files = {
        "dataset_description.json": json.dumps({"Name": "fixture", "BIDSVersion": "1.8.0"}).encode(),
        "participants.tsv": b"participant_id\tage\nsub-01\t31\nsub-02\t25\nsub-03\t30\n",
        "README": b"A fixture shaped like ds000117.\n",
        "CHANGES": b"1.0.0 fixture\n",
        "task-facerecognition_meg.json": b'{"TaskName": "facerecognition"}',
        "task-facerecognition_events.json": b'{"trial_type": {}}',
        "derivatives/meg_derivatives/dataset_description.json": b'{"Name": "sss"}',
        "derivatives/meg_derivatives/sub-01/ses-meg/meg/sub-01_ses-meg_task-facerecognition_run-01_proc-sss_meg.fif":
            rng.bytes(40_000),
    }
    for s in ("01", "02", "03"):
        base = f"sub-{s}/ses-meg"
        files[f"{base}/sub-{s}_ses-meg_scans.tsv"] = f"filename\nmeg/sub-{s}_run-01_meg.fif\n".encode()
        for run in ("01", "02"):
            stem = f"{base}/meg/sub-{s}_ses-meg_task-facerecognition_run-{run}"
            files[f"{stem}_meg.fif"] = rng.bytes(int(rng.integers(200_000, 400_000)))
            files[f"{stem}_channels.tsv"] = b"name\ttype\tunits\nEEG001\tEEG\tV\n"
            files[f"{stem}_events.tsv"] = b"onset\tduration\ttrial_type\n1.0\t0\tface\n"
        files[f"sub-{s}/ses-mri/anat/sub-{s}_ses-mri_T1w.nii.gz"] = rng.bytes(50_000)
    files[BIG_KEY] = rng.bytes(3_000_000)  # the object cut mid-transfer
    files[MULTIPART_KEY] = rng.bytes(6 * 1024 * 1024 + 12345)  # 2 parts: 5 MiB + rest
    return files


def many_tree():
    files = {"dataset_description.json": b'{"Name": "many"}'}
    for i in range(N_MANY):
        files[f"derivatives/many/k{i:04d}.txt"] = f"key {i}\n".encode()
    return files


class Proxy:
    """A logging, fault-injecting HTTP/1.0 proxy in front of moto; restartable on its port."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.port = free_port()
        self.log = []
        self.server = None
        self.reset()

    def reset(self):
        self.log.clear()
        self.dead = False
        self.deny_all = False
        self.cut = {}  # key → bytes to send before the connection breaks
        self.kill_after_cut = False  # after the cut the server goes down (refuses connections)
        self.fail_5xx = {}  # key → number of 503 answers to give first
        self.not_found = set()  # keys answered 404 NoSuchKey

    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def handle(self):
                if proxy.dead:  # a server going down: drop the connection, answer nothing
                    return
                super().handle()

            def error_xml(self, status, code, message):
                body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                        f"<Message>{message}</Message></Error>").encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                parts = urlsplit(self.path)
                path = unquote(parts.path)
                key = path[len(f"/{BUCKET}/"):] if path.startswith(f"/{BUCKET}/") else None
                proxy.log.append({"method": "GET", "path": path, "query": parts.query,
                                  "range": self.headers.get("Range"), "key": key})
                if proxy.deny_all:
                    return self.error_xml(403, "AccessDenied", "Access Denied")
                if key in proxy.not_found:
                    return self.error_xml(404, "NoSuchKey", "The specified key does not exist.")
                if proxy.fail_5xx.get(key, 0) > 0:
                    proxy.fail_5xx[key] -= 1
                    return self.error_xml(503, "SlowDown", "Please reduce your request rate.")
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=30)
                headers = {"Host": f"127.0.0.1:{proxy.upstream_port}"}
                if self.headers.get("Range"):
                    headers["Range"] = self.headers["Range"]
                conn.request("GET", self.path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                self.send_response(resp.status)
                for name, value in resp.getheaders():
                    if name.lower() in ("content-type", "content-range", "etag", "accept-ranges",
                                        "last-modified", "x-amz-request-id"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = proxy.cut.pop(key, None)
                if cut is not None and cut < len(body):
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    if proxy.kill_after_cut:
                        proxy.dead = True
                        threading.Thread(target=proxy.stop, daemon=True).start()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.dead = False
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def requests_for(self, key):
        return [r for r in self.log if r["key"] == f"{DS}/{key}"]


@pytest.fixture(scope="module")
def downloader():
    """`bf-pipeline download`, the download half of `bf-pipeline ingest`."""
    return bin_path("bf-pipeline")


@contextlib.contextmanager
def public_moto():
    """moto on a free loopback port with an empty public bucket BUCKET (anonymous reads allowed
    by the bucket policy, like OpenNeuro's); yields (port, boto3 client)."""
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # moto's backends are global to the process: every server started by this pytest run
    # shares one store. Reset it, so another test file's bucket contents never leak in.
    reset_moto(port)
    try:
        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
                           "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]}]}))
        yield port, client
    finally:
        reset_moto(port)
        server.stop()


@pytest.fixture(scope="module")
def s3():
    """moto on a free loopback port with the fixture datasets uploaded; yields (port, trees)."""
    with public_moto() as (port, client):
        # A bucket without that policy: moto denies anonymous GETs of its objects (403).
        client.create_bucket(Bucket=PRIVATE_BUCKET)
        client.put_object(Bucket=PRIVATE_BUCKET, Key=f"{DS}/README", Body=b"private\n")
        tree, many = fixture_tree(), many_tree()
        puts = [(f"{DS}/{k}", v) for k, v in tree.items() if k != MULTIPART_KEY]
        puts += [(f"{DS_MANY}/{k}", v) for k, v in many.items()]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda kv: client.put_object(Bucket=BUCKET, Key=kv[0], Body=kv[1]), puts))
        # The multipart object: its ETag is "<md5 of the part md5s>-2".
        key, data, cut = f"{DS}/{MULTIPART_KEY}", tree[MULTIPART_KEY], 5 * 1024 * 1024
        up = client.create_multipart_upload(Bucket=BUCKET, Key=key)
        etags = [client.upload_part(Bucket=BUCKET, Key=key, UploadId=up["UploadId"], PartNumber=i + 1,
                                    Body=chunk)["ETag"] for i, chunk in enumerate([data[:cut], data[cut:]])]
        client.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=up["UploadId"],
            MultipartUpload={"Parts": [{"ETag": e, "PartNumber": i + 1} for i, e in enumerate(etags)]})
        assert client.head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"').endswith("-2")
        yield port, {DS: tree, DS_MANY: many}


@pytest.fixture
def proxy(s3):
    p = Proxy(s3[0])
    p.start()
    yield p
    p.stop()


@pytest.fixture
def tree(s3):
    return s3[1][DS]


def run(downloader, proxy, dest, *extra, dataset=DS, retries=2, expect_rc=0):
    proc = subprocess.run([str(downloader), "--quiet", "download", dataset, "--s3-endpoint", proxy.url(),
                           "--dest", str(dest), "--jobs", "4", "--retries", str(retries), "--json",
                           *map(str, extra)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == expect_rc, f"rc {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout), proc.stderr


def local_files(dest):
    return {p.relative_to(dest).as_posix(): p.read_bytes() for p in Path(dest).rglob("*") if p.is_file()}


def assert_same_tree(dest, expected):
    got = local_files(dest)
    assert sorted(got) == sorted(expected)
    for k, v in expected.items():
        assert got[k] == v, f"{k} differs from the source"


# --- full download, selection ---------------------------------------------------------------

def test_full_download_equals_source_byte_for_byte(downloader, proxy, tree, tmp_path):
    summary, _ = run(downloader, proxy, tmp_path / "out")
    assert_same_tree(tmp_path / "out", tree)
    assert summary["files_total"] == len(tree)
    assert summary["files_downloaded"] == len(tree)
    assert summary["files_skipped_complete"] == 0
    assert summary["bytes_downloaded"] == sum(map(len, tree.values()))
    assert summary["failures"] == []
    # A rerun skips everything (size + MD5 checked locally), and GETs no object.
    proxy.log.clear()
    summary, _ = run(downloader, proxy, tmp_path / "out")
    assert summary["files_skipped_complete"] == len(tree) and summary["files_downloaded"] == 0
    assert summary["bytes_downloaded"] == 0
    assert all(r["key"] is None for r in proxy.log), "a complete file was fetched again"


def test_selection_subjects_and_datatype(downloader, proxy, tree, tmp_path):
    dest = tmp_path / "out"
    summary, _ = run(downloader, proxy, dest, "--subjects", "01,sub-03", "--datatype", "meg")
    want = {k: v for k, v in tree.items()
            if not k.startswith("sub-") and "/sub-0" not in k  # dataset-level files
            or k.startswith(("sub-01/ses-meg/", "sub-03/ses-meg/"))  # meg folder + scans.tsv
            or k.startswith("derivatives/meg_derivatives/sub-01/")}
    assert not any("anat" in k or k.startswith("sub-02") for k in want)
    assert "sub-01/ses-meg/sub-01_ses-meg_scans.tsv" in want
    assert_same_tree(dest, want)
    assert summary["files_total"] == len(want)


def test_selection_include_glob(downloader, proxy, tree, tmp_path):
    dest = tmp_path / "out"
    run(downloader, proxy, dest, "--include", "*run-02_meg.fif", "--subjects", "02")
    got = set(local_files(dest))
    assert "sub-02/ses-meg/meg/sub-02_ses-meg_task-facerecognition_run-02_meg.fif" in got
    assert "sub-02/ses-meg/sub-02_ses-meg_scans.tsv" in got  # session-level file of a selected subject
    assert "participants.tsv" in got and "task-facerecognition_meg.json" in got
    assert not any(k.startswith(("sub-01", "sub-03")) for k in got)
    assert not any("run-01" in k and k.startswith("sub-") for k in got)
    assert not any(k.endswith("channels.tsv") for k in got)


def test_selection_unknown_subject_is_an_error(downloader, proxy, tmp_path):
    summary, err = run(downloader, proxy, tmp_path / "out", "--subjects", "42", expect_rc=2)
    assert "sub-42" in summary["error"] and DS in summary["error"], summary


# --- pagination -----------------------------------------------------------------------------

def test_listing_pagination_over_1000_keys(downloader, proxy, s3, tmp_path):
    dest = tmp_path / "out"
    summary, _ = run(downloader, proxy, dest, dataset=DS_MANY)
    many = s3[1][DS_MANY]
    assert summary["files_total"] == len(many) == N_MANY + 1
    assert_same_tree(dest, many)
    lists = [r for r in proxy.log if r["key"] is None and "list-type=2" in r["query"]]
    assert len(lists) >= 2, lists
    assert "continuation-token" not in lists[0]["query"]
    assert all("continuation-token=" in r["query"] for r in lists[1:])


# --- resume and verification ----------------------------------------------------------------

def test_resume_partial_with_range_request(downloader, proxy, tree, tmp_path):
    dest = tmp_path / "out"
    run(downloader, proxy, dest)
    key = "sub-01/ses-meg/meg/sub-01_ses-meg_task-facerecognition_run-01_meg.fif"
    data = tree[key]
    half = len(data) // 2
    (dest / key).unlink()
    (dest / (key + ".part")).write_bytes(data[:half])
    proxy.log.clear()
    summary, _ = run(downloader, proxy, dest)
    assert summary["files_downloaded"] == 1 and summary["files_skipped_complete"] == len(tree) - 1
    assert summary["bytes_downloaded"] == len(data) - half
    reqs = proxy.requests_for(key)
    assert [r["range"] for r in reqs] == [f"bytes={half}-"], reqs
    assert (dest / key).read_bytes() == data
    assert not (dest / (key + ".part")).exists()


def test_resume_multipart_object_checked_on_size(downloader, proxy, tree, tmp_path):
    dest = tmp_path / "out"
    data = tree[MULTIPART_KEY]
    (dest / MULTIPART_KEY).parent.mkdir(parents=True)
    (dest / (MULTIPART_KEY + ".part")).write_bytes(data[:1_000_000])
    run(downloader, proxy, dest, "--include", "*run-03_meg.fif", "--subjects", "01", "--datatype", "meg")
    assert [r["range"] for r in proxy.requests_for(MULTIPART_KEY)] == ["bytes=1000000-"]
    assert (dest / MULTIPART_KEY).read_bytes() == data


def test_corrupted_partial_detected_by_md5_and_fetched_again(downloader, proxy, tree, tmp_path):
    dest = tmp_path / "out"
    key = "sub-03/ses-meg/meg/sub-03_ses-meg_task-facerecognition_run-02_meg.fif"
    data = tree[key]
    half = len(data) // 2
    (dest / key).parent.mkdir(parents=True)
    bad = bytearray(data[:half])
    bad[100:110] = bytes(b ^ 0xFF for b in bad[100:110])
    (dest / (key + ".part")).write_bytes(bytes(bad))
    summary, _ = run(downloader, proxy, dest, "--subjects", "03", "--datatype", "meg", "--include", "*run-02_meg.fif")
    reqs = proxy.requests_for(key)
    assert [r["range"] for r in reqs] == [f"bytes={half}-", None], reqs  # resume, then from scratch
    assert (dest / key).read_bytes() == data
    assert summary["failures"] == []
    assert summary["bytes_downloaded"] >= len(data) + (len(data) - half)


def test_wrong_complete_file_is_fetched_again(downloader, proxy, tree, tmp_path):
    dest = tmp_path / "out"
    run(downloader, proxy, dest, "--subjects", "02")
    key = "sub-02/ses-meg/meg/sub-02_ses-meg_task-facerecognition_run-02_meg.fif"
    (dest / key).write_bytes(bytes(len(tree[key])))  # right size, wrong bytes
    proxy.log.clear()
    summary, _ = run(downloader, proxy, dest, "--subjects", "02")
    assert summary["files_downloaded"] == 1
    assert [r["range"] for r in proxy.requests_for(key)] == [None]
    assert (dest / key).read_bytes() == tree[key]


# --- network faults -------------------------------------------------------------------------

def test_server_killed_mid_download_then_rerun_finishes(downloader, proxy, tree, tmp_path):
    dest = tmp_path / "out"
    sel = ("--subjects", "02", "--datatype", "meg", "--include", "*run-01_meg.fif")
    proxy.cut[f"{DS}/{BIG_KEY}"] = 1_234_567
    proxy.kill_after_cut = True
    summary, _ = run(downloader, proxy, dest, *sel, retries=1, expect_rc=1)
    # The big object broke off; whatever else was not done yet failed with the server down.
    failures = dict(summary["failures"])
    assert f"{DS}/{BIG_KEY}" in failures, summary
    for key, msg in failures.items():
        assert f"{proxy.url()}/{BUCKET}/{key}" in msg and "network error" in msg, msg
    assert summary["files_downloaded"] + len(failures) == summary["files_total"]
    part = dest / (BIG_KEY + ".part")
    assert part.stat().st_size == 1_234_567
    assert not (dest / BIG_KEY).exists()
    # The server comes back on the same port; the rerun continues the part file.
    proxy.reset()
    proxy.start()
    summary, _ = run(downloader, proxy, dest, *sel)
    assert summary["failures"] == [] and summary["files_downloaded"] == len(failures)
    assert [r["range"] for r in proxy.requests_for(BIG_KEY)] == ["bytes=1234567-"]
    assert summary["bytes_downloaded"] < len(tree[BIG_KEY])  # only the rest of the big one was fetched
    assert (dest / BIG_KEY).read_bytes() == tree[BIG_KEY]
    assert not part.exists()


def test_transient_cut_and_5xx_are_retried_within_one_run(downloader, proxy, tree, tmp_path):
    dest = tmp_path / "out"
    proxy.cut[f"{DS}/{BIG_KEY}"] = 500_000
    other = "sub-02/ses-meg/meg/sub-02_ses-meg_task-facerecognition_run-02_meg.fif"
    proxy.fail_5xx[f"{DS}/{other}"] = 2
    summary, _ = run(downloader, proxy, dest, "--subjects", "02", retries=3)
    assert summary["failures"] == []
    assert [r["range"] for r in proxy.requests_for(BIG_KEY)] == [None, "bytes=500000-"]
    assert len(proxy.requests_for(other)) == 3
    assert_same_tree(dest, {k: v for k, v in tree.items()
                            if k.startswith("sub-02/") or not (k.startswith("sub-") or "/sub-0" in k)})


def test_object_404_is_recorded_and_others_continue(downloader, proxy, tree, tmp_path):
    dest = tmp_path / "out"
    gone = "sub-01/ses-mri/anat/sub-01_ses-mri_T1w.nii.gz"
    proxy.not_found.add(f"{DS}/{gone}")
    summary, _ = run(downloader, proxy, dest, expect_rc=1)
    assert len(summary["failures"]) == 1
    key, msg = summary["failures"][0]
    assert key == f"{DS}/{gone}"
    assert "404" in msg and "NoSuchKey" in msg and f"/{BUCKET}/{DS}/{gone}" in msg, msg
    assert len(proxy.requests_for(gone)) == 1, "a 404 must not be retried"
    assert summary["files_downloaded"] == len(tree) - 1
    assert_same_tree(dest, {k: v for k, v in tree.items() if k != gone})


def test_dataset_without_keys_is_a_clear_error(downloader, proxy, tmp_path):
    summary, err = run(downloader, proxy, tmp_path / "out", dataset="ds999999", expect_rc=2)
    msg = summary["error"]
    assert "nothing was found for dataset ds999999" in msg, msg
    assert f"{proxy.url()}/{BUCKET}?list-type=2&prefix=ds999999%2F" in msg, msg
    assert not (tmp_path / "out").exists()


def test_missing_bucket_is_a_clear_404(downloader, proxy, tmp_path):
    summary, _ = run(downloader, proxy, tmp_path / "out", "--bucket", "no-such-bucket", expect_rc=2)
    msg = summary["error"]
    assert "HTTP 404" in msg and "NoSuchBucket" in msg and "/no-such-bucket?list-type=2" in msg, msg


def test_access_denied_is_a_clear_403(downloader, proxy, tmp_path):
    proxy.deny_all = True
    summary, err = run(downloader, proxy, tmp_path / "out", expect_rc=2)
    msg = summary["error"]
    assert "HTTP 403" in msg and "AccessDenied" in msg and f"{proxy.url()}/{BUCKET}?list-type=2" in msg, msg
    assert len(proxy.log) == 1, "a 403 must not be retried"
    assert "HTTP 403" in err


def test_private_object_403_from_moto_names_the_url(downloader, proxy, tmp_path):
    summary, _ = run(downloader, proxy, tmp_path / "out", "--bucket", PRIVATE_BUCKET, expect_rc=1)
    assert summary["files_downloaded"] == 0
    [(key, msg)] = summary["failures"]
    assert key == f"{DS}/README"
    assert "HTTP 403" in msg and f"{proxy.url()}/{PRIVATE_BUCKET}/{DS}/README" in msg, msg
    assert not (tmp_path / "out" / "README").exists()


def test_ingest_from_s3_end_to_end(s3, proxy, tmp_path):
    """`bf-pipeline ingest dsNNNNNN --s3-endpoint`: a bucket filled from a fixture BIDS
    dataset is downloaded byte for byte, then indexed into a manifest."""
    port = s3[0]
    src = tmp_path / "src"
    subprocess.run([bin_path("bf-fixtures"), "--out", src, "--subjects", "2", "--runs", "1", "--seconds", "4"],
                   check=True, capture_output=True)
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    files = {p.relative_to(src).as_posix(): p.read_bytes() for p in src.rglob("*") if p.is_file()}
    for rel, data in files.items():
        client.put_object(Bucket=BUCKET, Key=f"ds000042/{rel}", Body=data)
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([bin_path("bf-pipeline"), "--quiet", "ingest", "ds000042", "--s3-endpoint", proxy.url(),
                           "--dest", "ds000042"], cwd=work, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = {k: v for k, v in local_files(work / "ds000042").items() if not k.startswith("derivatives/")}
    # The fixture has derivatives/meg_derivatives (as ds000117 does); compare the raw dataset.
    assert got == {k: v for k, v in files.items() if not k.startswith("derivatives/")}
    import polars as pl
    manifest = pl.read_parquet(work / "ds000042/derivatives/brainformer/manifest.parquet")
    assert manifest.height == 2 and manifest["n_eeg"].to_list() == [70, 70]
    assert (work / "brainformer.toml").read_text().count('source = "ds000042"') == 1
