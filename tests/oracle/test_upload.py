"""`bf-pipeline upload` against a Hub stand-in on loopback (tests/hubstub/hubstub.py).

The stand-in counts only once it is shown faithful: the official `huggingface_hub` client
(create_repo, upload_folder with an LFS multipart file, list_repo_files, snapshot_download)
works on it unmodified through HF_ENDPOINT. The client runs in a subprocess with
HF_HUB_DISABLE_XET=1: with hf_xet installed, huggingface_hub 2.4 uploads through Xet storage,
a separate content-addressed protocol the stand-in does not implement; the switch makes it use
the Hub's LFS path, the one we implement. Then our upload: same bytes back through
snapshot_download, same rows through `datasets`, an upload killed midway finished by a rerun
that sends only what is missing, retries of transient failures, a clear error and no commit
for a bad token, and a checkpoint pushed to a model repository with its model card.
"""
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, bin_path, make_shards

sys.path.insert(0, str(ROOT / "tests" / "hubstub"))
import hubstub  # noqa: E402

PY = sys.executable


@pytest.fixture
def stub():
    s = hubstub.HubStub(multipart_threshold=1 << 20, chunk_size=1 << 20).start()
    yield s
    s.stop()


def hf_env(stub, tmp_path, token=None):
    """Environment for both clients: our endpoint, a token, an empty HF_HOME, fast backoff."""
    env = dict(os.environ, HF_ENDPOINT=stub.url, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_XET="1",
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", BF_HUB_BACKOFF_MS="20",
               HF_TOKEN=stub.token if token is None else token)
    env.pop("HF_TOKEN_PATH", None)
    return env


def official(env, code):
    """Runs `code` with huggingface_hub in a fresh interpreter; returns its last stdout line as JSON."""
    proc = subprocess.run([PY, "-c", "import json, os\nfrom huggingface_hub import HfApi, snapshot_download\napi = HfApi()\n" + code],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def upload(env, *args, check=True):
    proc = subprocess.run([bin_path("bf-pipeline"), "upload", *map(str, args)], env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def tree(folder):
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """A small real shards folder: 3 subjects x 1 run x 20 s through ingest and tokenize."""
    folder = make_shards(tmp_path_factory.mktemp("upload"), subjects=3, seconds=20)
    assert (folder / "README.md").is_file() and list((folder / "data").glob("*.parquet"))
    return folder


def test_official_client_works_on_the_stand_in(stub, tmp_path):
    up = tmp_path / "up"
    (up / "data").mkdir(parents=True)
    (up / "README.md").write_text("---\nlicense: mit\n---\n# card\n")
    (up / "data" / "big.bin").write_bytes(np.random.default_rng(0).bytes(3_500_000))   # > 1 MiB: multipart, 4 parts
    (up / "data" / "small.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 4)        # LFS by pattern: basic
    env = hf_env(stub, tmp_path)
    out = official(env, f"""
url = api.create_repo("user/faith", repo_type="dataset")
api.create_repo("user/faith", repo_type="dataset", exist_ok=True)
ci = api.upload_folder(repo_id="user/faith", repo_type="dataset", folder_path={str(up)!r})
files = api.list_repo_files("user/faith", repo_type="dataset")
path = snapshot_download("user/faith", repo_type="dataset", local_dir={str(tmp_path / 'down')!r})
again = api.upload_folder(repo_id="user/faith", repo_type="dataset", folder_path={str(up)!r})
print(json.dumps({{"url": str(url), "oid": ci.oid, "files": files, "again": again.oid}}))
""")
    assert out["url"] == f"{stub.url}/datasets/user/faith"
    assert out["files"] == [".gitattributes", "README.md", "data/big.bin", "data/small.parquet"]
    assert tree(tmp_path / "down") == tree(up)
    assert out["again"] == out["oid"], "unchanged files must not make a second commit"
    assert stub.commit_count("dataset", "user/faith") == 2      # the Hub's initial commit + the upload
    assert stub.counts["part_put"] == 4 and stub.counts["complete"] == 1 and stub.counts["basic_put"] == 1
    assert stub.counts["commit"] == 1


def test_upload_shards_round_trip(stub, tmp_path, shards):
    import datasets
    env = hf_env(stub, tmp_path)
    report = json.loads(upload(env, "user/ds", "--shards", shards, "--json").stdout)
    local = tree(shards)
    n_lfs = sum(p.endswith(".parquet") for p in local)
    assert report["files_committed"] == len(local) and report["lfs_objects_sent"] == n_lfs
    assert report["lfs_bytes_sent"] == sum(len(b) for p, b in local.items() if p.endswith(".parquet"))
    assert stub.counts["part_put"] > n_lfs, "shards above 1 MiB must go multipart"
    official(env, f"snapshot_download('user/ds', repo_type='dataset', local_dir={str(tmp_path / 'down')!r}); print('{{}}')")
    assert tree(tmp_path / "down") == local
    for split in ("train", "validation", "test"):
        files = {split: [str(p) for p in sorted((tmp_path / "down" / "data").glob(f"{split}-*.parquet"))]}
        ours = {split: [str(p) for p in sorted((shards / "data").glob(f"{split}-*.parquet"))]}
        remote = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "c1"))[split]
        orig = datasets.load_dataset("parquet", data_files=ours, cache_dir=str(tmp_path / "c2"))[split]
        assert remote.num_rows == orig.num_rows > 0
        assert remote.data.table.equals(orig.data.table)
    # Same folder again: nothing sent, no commit.
    again = json.loads(upload(env, "user/ds", "--shards", shards, "--json").stdout)
    assert again["commit"] is None and again["files_unchanged"] == len(local) and again["lfs_bytes_sent"] == 0
    assert stub.commit_count("dataset", "user/ds") == 2


def test_killed_upload_is_finished_by_a_rerun_sending_only_what_is_missing(stub, tmp_path, shards):
    env = hf_env(stub, tmp_path)
    local = tree(shards)
    sizes = {hashlib.sha256(b).hexdigest(): len(b) for p, b in local.items() if p.endswith(".parquet")}
    held = stub.block_after("complete", 1)          # the first LFS object completes, the second is held
    proc = subprocess.Popen([bin_path("bf-pipeline"), "upload", "user/ds", "--shards", shards, "--jobs", "2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert held.wait(60), "the upload never reached its second multipart completion"
        deadline = time.monotonic() + 10           # the first completion may still be being stored
        while not set(stub.lfs) & set(sizes) and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.kill()
        proc.wait(30)
    finally:
        stub.release()
    assert stub.commit_count("dataset", "user/ds") == 1, "the killed run must not commit"
    stored = set(stub.lfs) & set(sizes)
    assert len(stored) == 1
    stub.reset_counts()
    report = json.loads(upload(env, "user/ds", "--shards", shards, "--json").stdout)
    assert report["lfs_objects_present"] == 1 and report["lfs_objects_sent"] == len(sizes) - 1
    missing = sum(n for oid, n in sizes.items() if oid not in stored)
    assert stub.lfs_bytes == missing == report["lfs_bytes_sent"], "the rerun must send only the missing objects"
    assert stub.counts["commit"] == 1 and stub.commit_count("dataset", "user/ds") == 2
    assert stub.files("dataset", "user/ds") == {".gitattributes": hubstub.GITATTRIBUTES, **local}


def test_transient_failures_are_retried(stub, tmp_path, shards):
    env = hf_env(stub, tmp_path)
    stub.fail("preupload", 1, 429)                 # with Retry-After: 1
    stub.fail("part_put", 2, "drop")               # connection closed after the body
    stub.fail("part_put", 3, 500)
    stub.fail("commit", 1, 503)                    # the Hub answered: safe to retry
    report = json.loads(upload(env, "user/ds", "--shards", shards, "--json").stdout)
    assert report["commit"] is not None
    n_parts = sum(-(-len(b) // (1 << 20)) for p, b in tree(shards).items() if p.endswith(".parquet"))
    assert stub.counts["preupload"] == 2 and stub.counts["part_put"] == n_parts + 2 and stub.counts["commit"] == 2
    assert stub.commit_count("dataset", "user/ds") == 2
    assert stub.files("dataset", "user/ds") == {".gitattributes": hubstub.GITATTRIBUTES, **tree(shards)}


def test_persistent_failure_is_bounded_and_commits_nothing(stub, tmp_path, shards):
    env = hf_env(stub, tmp_path)
    stub.fail("part_put", 1, 500, times=1000)
    proc = upload(env, "user/ds", "--shards", shards, "--retries", "2", check=False)
    assert proc.returncode != 0
    assert "gave up after 3 attempts" in proc.stderr and "nothing committed" in proc.stderr, proc.stderr
    assert "HTTP 500" in proc.stderr and "LFS part" in proc.stderr and "run the same command again" in proc.stderr
    assert stub.counts.get("commit", 0) == 0 and stub.commit_count("dataset", "user/ds") == 1


def test_bad_or_missing_token(stub, tmp_path, shards):
    secret = "hf_wrong_0123456789abcdef"
    proc = upload(hf_env(stub, tmp_path, token=secret), "user/ds", "--shards", shards, check=False)
    assert proc.returncode != 0
    assert "401" in proc.stderr and "token" in proc.stderr and "HF_TOKEN" in proc.stderr, proc.stderr
    assert secret not in proc.stdout + proc.stderr
    assert stub.repos == {} and stub.counts.get("commit", 0) == 0
    env = hf_env(stub, tmp_path)
    del env["HF_TOKEN"]
    proc = upload(env, "user/ds", "--shards", shards, check=False)
    assert proc.returncode != 0 and "no Hugging Face token" in proc.stderr and "hf_home/token" in proc.stderr, proc.stderr
    # The token file huggingface_hub writes on login is used when HF_TOKEN is unset.
    (tmp_path / "hf_home").mkdir()
    (tmp_path / "hf_home" / "token").write_text(stub.token)
    upload(env, "user/ds", "--shards", shards)
    assert stub.commit_count("dataset", "user/ds") == 2


def test_model_upload_with_card(stub, tmp_path):
    from safetensors.numpy import load_file, save_file
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"d_model": 32, "n_layers": 2}))
    weights = {"emb.weight": np.arange(64 * 32, dtype=np.float32).reshape(64, 32), "head.bias": np.ones(7, np.float32)}
    save_file(weights, str(ckpt / "model.safetensors"))
    metrics = tmp_path / "eval.json"
    metrics.write_text(json.dumps({"test": {"accuracy": 0.8125, "r2": 0.25}, "loss": 1.5}))
    env = hf_env(stub, tmp_path)
    upload(env, "--model", ckpt, "user/bf-small", "--metrics", metrics)
    files = stub.files("model", "user/bf-small")
    assert set(files) == {".gitattributes", "README.md", "config.json", "model.safetensors"}
    card = files["README.md"].decode()
    assert "| test.accuracy | 0.8125 |" in card and "| loss | 1.5 |" in card and "library_name: brainformer" in card
    official(env, f"snapshot_download('user/bf-small', local_dir={str(tmp_path / 'down')!r}); print('{{}}')")
    got = load_file(str(tmp_path / "down" / "model.safetensors"))
    assert set(got) == set(weights) and all(np.array_equal(got[k], weights[k]) for k in weights)
    assert (tmp_path / "down" / "config.json").read_bytes() == (ckpt / "config.json").read_bytes()
    # metrics.json in the checkpoint is the default and is pushed too.
    (ckpt / "metrics.json").write_text(json.dumps({"loss": 1.25}))
    upload(env, "--model", ckpt, "user/bf-small")
    files = stub.files("model", "user/bf-small")
    assert "| loss | 1.25 |" in files["README.md"].decode() and "metrics.json" in files


def test_missing_revision_and_too_large_are_named(stub, tmp_path, shards):
    env = hf_env(stub, tmp_path)
    proc = upload(env, "user/ds", "--shards", shards, "--revision", "nope", "--private", check=False)
    assert proc.returncode != 0 and "HTTP 404" in proc.stderr and "user/ds@nope" in proc.stderr, proc.stderr
    assert stub.repos[("dataset", "user/ds")].private and stub.commit_count("dataset", "user/ds") == 1
    stub.fail("commit", 1, 413)
    proc = upload(env, "user/ds", "--shards", shards, check=False)
    assert proc.returncode != 0 and "HTTP 413" in proc.stderr and "nothing committed" in proc.stderr, proc.stderr
    assert stub.commit_count("dataset", "user/ds") == 1
    # The LFS objects of the refused commit are kept: the rerun only commits.
    stub.reset_counts()
    report = json.loads(upload(env, "user/ds", "--shards", shards, "--json").stdout)
    assert report["lfs_bytes_sent"] == 0 and stub.lfs_bytes == 0 and report["files_committed"] == len(tree(shards))


def test_bf_train_push_to_hub(stub, tmp_path, shards):
    """`bf-train --push-to-hub` sends the best checkpoint; PyTorch-loadable weights come back."""
    from safetensors.numpy import load_file
    env = hf_env(stub, tmp_path)
    out = tmp_path / "run"
    proc = subprocess.run([str(bin_path("bf-train")), "--shards", str(shards), "--out", str(out), "--d_model", "16",
                           "--n_heads", "2", "--d_ff", "32", "--sequence_length", "16", "--batch_size", "2",
                           "--max_steps", "2", "--eval_interval", "2", "--eval_batches", "1", "--device", "cpu",
                           "--quiet", "--push-to-hub", "user/bf-trained"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    files = stub.files("model", "user/bf-trained")
    assert {"README.md", "config.json", "model.safetensors"} <= set(files)
    official(env, f"snapshot_download('user/bf-trained', local_dir={str(tmp_path / 'down')!r}); print('{{}}')")
    got, ours = load_file(str(tmp_path / "down" / "model.safetensors")), load_file(str(out / "best" / "model.safetensors"))
    assert set(got) == set(ours) and all(np.array_equal(got[k], ours[k]) for k in ours)
