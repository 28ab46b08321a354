"""Downloads plan first: `bf-pipeline download/ingest --dry-run` and the free-space check.

The bucket is moto's (ThreadedMotoServer, as in test_s3_download.py) holding every key of the
real ds000117 listing (../shared/data/ds000117/listing.tsv: 578 files, sub-01 … sub-16,
sub-emptyroom, derivatives/meg_derivatives) with small deterministic placeholder contents
(`min(size, 256)` bytes; the real files are up to ~900 MB and moto keeps objects in memory).
So the plan's totals are checked against the placeholders' sizes, with the real key layout.

The free space is capped through BF_FREE_SPACE_BYTES (the testing aid the CLI documents).
"""
import hashlib
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import SHARED_DATA, bin_path

boto3 = pytest.importorskip("boto3", reason="pip install 'moto[server]' boto3 (requirements.txt)")
moto_server = pytest.importorskip("moto.server", reason="pip install 'moto[server]' (requirements.txt)")

from test_s3_download import BUCKET, Proxy, local_files, public_moto  # noqa: E402

DS = "ds000117"
LISTING = SHARED_DATA / DS / "listing.tsv"
MARGIN_MIN = 64 << 20  # bf_pipeline::source::SPACE_MARGIN_MIN
TOP = "(top level)"


def placeholder(rel, size):
    """Deterministic bytes standing in for the file `rel` of `size` bytes."""
    n = min(size, 256)
    seed = hashlib.sha256(rel.encode()).digest()
    return (seed * (n // len(seed) + 1))[:n]


def read_listing():
    rows = LISTING.read_text().splitlines()
    assert rows[0].split("\t")[:2] == ["path", "size"], rows[0]
    return {r.split("\t")[0]: int(r.split("\t")[1]) for r in rows[1:] if r.strip()}


def subject_of(rel):
    """The subject label of a key (first sub-* folder), as the downloader's selection sees it."""
    comps = rel.split("/")
    for c in comps[:-1]:
        if c.startswith("sub-"):
            return c[len("sub-"):]
    return None


def group_of(rel):
    return rel.split("/")[0] if "/" in rel else TOP


def needed(remaining):
    return 0 if remaining == 0 else remaining + max(-(-remaining // 100), MARGIN_MIN)


@pytest.fixture(scope="module")
def real_layout():
    """moto with every key of the real ds000117 listing; yields (port, {rel: bytes})."""
    if not LISTING.is_file():
        pytest.skip(f"{LISTING} is absent: these tests need ../shared beside the clone")
    tree = {rel: placeholder(rel, size) for rel, size in read_listing().items()}
    with public_moto() as (port, client):
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda kv: client.put_object(Bucket=BUCKET, Key=f"{DS}/{kv[0]}", Body=kv[1]),
                          tree.items()))
        yield port, tree


@pytest.fixture
def proxy(real_layout):
    p = Proxy(real_layout[0])
    p.start()
    yield p
    p.stop()


@pytest.fixture
def tree(real_layout):
    return real_layout[1]


def bf(proxy, *args, free=None, cwd=None, expect_rc=0):
    env = dict(os.environ)
    env.pop("BF_FREE_SPACE_BYTES", None)
    if free is not None:
        env["BF_FREE_SPACE_BYTES"] = str(free)
    proc = subprocess.run([str(bin_path("bf-pipeline")), *map(str, args), "--s3-endpoint", proxy.url()],
                          capture_output=True, text=True, timeout=300, env=env, cwd=cwd)
    assert proc.returncode == expect_rc, f"rc {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def dry_run_json(proxy, dest, *sel, free=None):
    proc = bf(proxy, "--quiet", "download", DS, "--dest", dest, "--dry-run", "--json", *sel, free=free)
    return json.loads(proc.stdout)


def object_gets(proxy):
    return [r for r in proxy.log if r["key"] is not None]


def select(tree, subject=None):
    return {k: v for k, v in tree.items() if subject is None or subject_of(k) in (None, subject)}


def assert_plan_matches(plan, want):
    t = plan["totals"]
    assert t["files"] == len(want) == len(plan["files"])
    assert t["bytes"] == sum(map(len, want.values()))
    assert t["bytes_present"] == 0 and t["files_complete"] == 0 and t["files_partial"] == 0
    assert t["bytes_to_download"] == t["bytes"]
    assert sorted(f["rel"] for f in plan["files"]) == sorted(want)
    assert all(f["size"] == len(want[f["rel"]]) and f["state"] == "missing" for f in plan["files"])
    # One group per subject folder, plus the top-level files and derivatives; they add up.
    groups = {g["name"]: g for g in plan["groups"]}
    expect = {}
    for rel, data in want.items():
        e = expect.setdefault(group_of(rel), [0, 0])
        e[0] += 1
        e[1] += len(data)
    assert {n: [g["files"], g["bytes"]] for n, g in groups.items()} == expect
    assert plan["space"]["to_download"] == t["bytes_to_download"]
    assert plan["space"]["needed"] == needed(t["bytes_to_download"])


# --- --dry-run ------------------------------------------------------------------------------

def test_dry_run_totals_whole_dataset(proxy, tree, tmp_path):
    dest = tmp_path / "out"
    plan = dry_run_json(proxy, dest)
    assert len(tree) == 578
    assert_plan_matches(plan, tree)
    names = [g["name"] for g in plan["groups"]]
    subjects = [f"sub-{i:02d}" for i in range(1, 17)] + ["sub-emptyroom"]
    assert names == [TOP, *subjects, "derivatives"]
    assert plan["dataset"] == DS and plan["refused"] == []
    assert not dest.exists(), "a dry run created the destination"
    assert object_gets(proxy) == [], "a dry run fetched objects"


def test_dry_run_totals_one_subject(proxy, tree, tmp_path):
    dest = tmp_path / "out"
    plan = dry_run_json(proxy, dest, "--subjects", "01")
    want = select(tree, "01")
    assert any(k.startswith("derivatives/meg_derivatives/sub-01/") for k in want)
    assert not any(k.startswith(("sub-02/", "sub-emptyroom/")) for k in want)
    assert_plan_matches(plan, want)
    assert [g["name"] for g in plan["groups"]] == [TOP, "sub-01", "derivatives"]
    assert not dest.exists()


def test_dry_run_table_has_one_line_per_subject(proxy, tree, tmp_path):
    dest = tmp_path / "out"
    proc = bf(proxy, "download", DS, "--dest", dest, "--dry-run")
    lines = proc.stdout.splitlines()
    assert len(lines) < 30, "the table should be per subject, not per file:\n" + proc.stdout
    total_bytes = sum(map(len, tree.values()))
    assert f"{len(tree)} files, {total_bytes} bytes; 0 bytes present, {total_bytes} bytes to download" in lines[0]
    rows = {line.split()[0]: line.split() for line in lines[1:] if line.startswith("  ")}
    for i in range(1, 17):
        name = f"sub-{i:02d}"
        n = sum(1 for k in tree if k.startswith(name + "/"))
        assert rows[name][1] == str(n), rows[name]
    assert "sub-emptyroom" in rows and "derivatives" in rows and "total" in rows
    assert any(line.startswith(f"  {TOP}") for line in lines)
    assert rows["total"][1] == str(len(tree))
    assert "free space:" in lines[-1] and ": enough" in lines[-1], lines[-1]
    assert not dest.exists()


def test_dry_run_counts_complete_and_part_files(proxy, tree, tmp_path):
    dest = tmp_path / "out"
    bf(proxy, "--quiet", "download", DS, "--dest", dest, "--subjects", "02", "--json")
    want = select(tree, "02")
    assert local_files(dest) == want
    # One file gone, one cut back to a .part, one of the wrong size: 3 not complete.
    big = sorted((k for k in want if k.startswith("sub-02/") and len(want[k]) == 256))
    gone, partial, wrong = big[:3]
    (dest / gone).unlink()
    (dest / partial).unlink()
    (dest / (partial + ".part")).write_bytes(want[partial][:100])
    (dest / wrong).write_bytes(b"x")
    proxy.log.clear()
    plan = dry_run_json(proxy, dest, "--subjects", "02")
    t = plan["totals"]
    assert t["files"] == len(want)
    assert (t["files_complete"], t["files_partial"]) == (len(want) - 3, 1)
    assert t["bytes_to_download"] == 256 + (256 - 100) + 256
    assert t["bytes_present"] == t["bytes"] - t["bytes_to_download"]
    states = {f["rel"]: (f["state"], f.get("bytes")) for f in plan["files"]}
    assert states[partial] == ("partial", 100) and states[gone][0] == states[wrong][0] == "missing"
    sub02 = next(g for g in plan["groups"] if g["name"] == "sub-02")
    assert sub02["bytes_to_download"] == t["bytes_to_download"]
    assert object_gets(proxy) == []
    # The real run then fetches exactly what the plan said.
    proc = bf(proxy, "--quiet", "download", DS, "--dest", dest, "--subjects", "02", "--json")
    summary = json.loads(proc.stdout)
    assert summary["bytes_downloaded"] == t["bytes_to_download"]
    assert summary["plan"] == t
    assert local_files(dest) == want


# --- free space -----------------------------------------------------------------------------

def test_too_little_free_space_writes_nothing(proxy, tree, tmp_path):
    dest = tmp_path / "a" / "b" / "out"
    want = select(tree, "01")
    need = needed(sum(map(len, want.values())))
    proc = bf(proxy, "download", DS, "--dest", dest, "--subjects", "01", free=need - 1, expect_rc=2)
    err = proc.stderr
    assert f"error: {dest}: not enough free disk space to download {DS}" in err, err
    assert f"({need} bytes) needed" in err and f"({need - 1} bytes) available" in err, err
    assert "1 bytes short" in err and "BF_FREE_SPACE_BYTES" in err, err
    assert "nothing was written" in err, err
    # The plan was shown first, with the verdict.
    assert "NOT ENOUGH" in err and "sub-01" in err, err
    assert not (tmp_path / "a").exists(), "the destination (or a parent) was created"
    assert object_gets(proxy) == []
    # --json: the same error as JSON on stdout.
    proc = bf(proxy, "--quiet", "download", DS, "--dest", dest, "--subjects", "01", "--json",
              free=1000, expect_rc=2)
    msg = json.loads(proc.stdout)["error"]
    assert "not enough free disk space" in msg and f"{need - 1000} bytes) short" in msg, msg
    assert not (tmp_path / "a").exists()


def test_enough_free_space_downloads_as_before(proxy, tree, tmp_path):
    dest = tmp_path / "out"
    want = select(tree, "01")
    need = needed(sum(map(len, want.values())))
    proc = bf(proxy, "--quiet", "download", DS, "--dest", dest, "--subjects", "01", "--json", free=need)
    summary = json.loads(proc.stdout)
    assert summary["failures"] == [] and summary["files_downloaded"] == len(want)
    assert local_files(dest) == want
    # Nothing left to fetch: a rerun needs no space at all.
    proc = bf(proxy, "--quiet", "download", DS, "--dest", dest, "--subjects", "01", "--json", free=0)
    assert json.loads(proc.stdout)["files_skipped_complete"] == len(want)


def test_bad_free_space_override_is_an_error(proxy, tmp_path):
    proc = bf(proxy, "download", DS, "--dest", tmp_path / "out", "--subjects", "01", free="lots", expect_rc=2)
    assert 'BF_FREE_SPACE_BYTES="lots" is not a number of bytes' in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


# --- ingest ---------------------------------------------------------------------------------

def test_ingest_dry_run_writes_nothing(proxy, tree, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    proc = bf(proxy, "ingest", DS, "--dest", "data", "--subjects", "01", "--dry-run", cwd=work)
    want = select(tree, "01")
    assert f"{len(want)} files, {sum(map(len, want.values()))} bytes" in proc.stdout, proc.stdout
    assert "  sub-01 " in proc.stdout and "  derivatives " in proc.stdout
    assert list(work.iterdir()) == [], "ingest --dry-run wrote something"
    assert object_gets(proxy) == []


def test_ingest_with_too_little_space_fails_before_writing(proxy, tree, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    proc = bf(proxy, "ingest", DS, "--dest", "data", "--subjects", "01", free=10, cwd=work, expect_rc=1)
    assert "not enough free disk space" in proc.stderr, proc.stderr
    assert list(work.iterdir()) == []
