"""Benchmark: the whole of ds000117, planned, timed and bounded (issue 16, item 3).

The real dataset (96 task runs of ~870 MB, 16 subjects × 6 runs, 83 GB of raw FIF) does not
fit this machine's time or, with its derivatives, always its disk. So this bench runs as many
full-size runs (404 channels × 540,100 samples at 1100 Hz, float32, as `bf-fixtures` writes
them: one subject each) as the free disk holds (at most --max-runs), measures

  1. ingest + tokenize of all of them with `--jobs 1` and with `--jobs 2` (wall time, peak
     RSS, the time of the per-run stages alone: `segment`, and of what is left: `tokenize`),
  2. the same through `bf-pipeline slurm` on the one-node SLURM of ../shared/slurm with a
     2-task array (skipped where it cannot start: slurm-wlm + munge, root),
  3. the bytes each run leaves in derivatives/brainformer (cleaned FIF, windows, tokens,
     shards) and the peak scratch,

and projects, from ../shared/data/ds000117/listing.tsv's real file sizes (time and disk scale
with the samples of a run, which its size gives), the whole dataset's wall time on this
machine (with --jobs 2) and on a 16-task SLURM array (one subject's 6 runs per task, each
task on a node like this one, then the dependent job that tokenizes every run and writes the
shards), and the disk its derivatives need.

    .venv/bin/python bench/bench_dataset.py --out-dir bench-data [--max-runs 6]

Prints Markdown to paste into BENCHMARKS.md. Each figure depends on this machine's load: the
load average is printed at the end.
"""
import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_read import BIN, ROOT, run_child  # noqa: E402

sys.path.insert(0, str(ROOT / "tests" / "oracle"))
from local_slurm import slurm_unavailable  # noqa: E402

SHARED = Path(os.environ.get("SHARED", ROOT.parent / "shared"))
LISTING = SHARED / "data" / "ds000117" / "listing.tsv"
LOCAL_SLURM = SHARED / "slurm" / "local-slurm"
FULL_RUN_SECONDS = 540_100 / 1100
RUN_RE = re.compile(r"^sub-(\d+)/ses-meg/meg/sub-\d+_ses-meg_task-facerecognition_run-\d+_meg\.fif$")

# One bf-pipeline command in its own process tree, timed (peak RSS by run_child's wrapper).
STEP = r"""
import json, subprocess, sys, time
t0 = time.perf_counter()
subprocess.run(sys.argv[2:], cwd=sys.argv[1], check=True, stdout=subprocess.DEVNULL)
print(json.dumps({"wall_s": time.perf_counter() - t0}))
"""


def real_runs():
    """(subject, bytes) of every raw task run of ds000117, from the real listing."""
    with open(LISTING) as f:
        return [(int(m.group(1)), int(row["size"])) for row in csv.DictReader(f, delimiter="\t")
                if (m := RUN_RE.match(row["path"]))]


def step(base, *args):
    res, _, rss = run_child([sys.executable, "-c", STEP, base, BIN / "bf-pipeline", "--quiet", *args])
    return res["wall_s"], rss


def folder_bytes(path):
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def derivative_bytes(ds):
    """Bytes of derivatives/brainformer by kind of file, summed over runs."""
    kinds = {"cleaned FIF (250 Hz, float32)": "*desc-clean_meg.fif", "windows": "*desc-windows*",
             "tokens (per run)": "*desc-tokens*"}
    der = ds / "derivatives" / "brainformer"
    out = {k: sum(p.stat().st_size for p in der.rglob(pat) if p.is_file()) for k, pat in kinds.items()}
    out["shards"] = folder_bytes(der / "shards")
    out["all of derivatives/brainformer"] = folder_bytes(der)
    return out


def make_dataset(base, runs):
    raw = sorted(p for p in (base / "ds").rglob("*_meg.fif") if "emptyroom" not in str(p) and "derivatives" not in str(p))
    if len(raw) == runs and (base / "ds" / "dataset_description.json").exists():
        return base, sum(p.stat().st_size for p in raw)  # made by an earlier run of this bench
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    t0 = time.perf_counter()
    subprocess.run([BIN / "bf-fixtures", "--out", base / "ds", "--subjects", str(runs), "--runs", "1",
                    "--seconds", str(FULL_RUN_SECONDS), "--no-derivatives"], check=True, stdout=subprocess.DEVNULL)
    raw = sorted(p for p in (base / "ds").rglob("*_meg.fif") if "emptyroom" not in str(p) and "derivatives" not in str(p))
    print(f"fixture: {len(raw)} full-size runs written in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return base, sum(p.stat().st_size for p in raw)


def clean(base):
    if not (base / "brainformer.toml").exists():
        return
    subprocess.run([BIN / "bf-pipeline", "--quiet", "clean", "--yes"], cwd=base, check=True, stdout=subprocess.DEVNULL)


def local(base, jobs):
    """ingest, then the per-run stages (segment), then the rest (tokenize)."""
    clean(base)
    t_ingest, rss_i = step(base, "ingest", "ds")
    t_seg, rss_s = step(base, "segment", "--jobs", str(jobs))
    t_tok, rss_t = step(base, "tokenize", "--jobs", str(jobs), "--allow-empty-split")
    return {"ingest": t_ingest, "segment": t_seg, "tokenize": t_tok, "total": t_ingest + t_seg + t_tok,
            "rss": max(rss_i, rss_s, rss_t)}


def slurm(base, tasks):
    """The 2-task array + final job on the one-node SLURM: wall from submit to the last end,
    and each job's own elapsed time (sacct is not configured there: the logs' timestamps)."""
    why = slurm_unavailable(LOCAL_SLURM)
    if why:
        return None, why
    clean(base)
    step(base, "ingest", "ds")
    state = base / "slurm-state"
    state.mkdir(exist_ok=True)
    start = subprocess.run([LOCAL_SLURM, "start", state], capture_output=True, text=True)
    env = dict(os.environ, SLURM_CONF=str(state / "slurm.conf"))
    try:
        if start.returncode != 0:
            return None, f"local-slurm did not start: {start.stderr.strip()[-200:]}"
        script = base / "bf-slurm.sh"
        subprocess.run([BIN / "bf-pipeline", "--quiet", "slurm", "--tasks", str(tasks), "--cpus-per-task", "1",
                        "--mem", "4G", "--allow-empty-split", "--out", script], cwd=base, check=True, stdout=subprocess.DEVNULL)
        t0 = time.perf_counter()
        sub = subprocess.run(["bash", script], env=env, cwd=base, capture_output=True, text=True, check=True)
        array, final = re.search(r"array job (\d+) .* and job (\d+)", sub.stdout).groups()
        marks = {}
        while True:
            q = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", f"{array},{final}"], env=env,
                               capture_output=True, text=True).stdout
            now = time.perf_counter() - t0
            if not any(" RUNNING" in line or " PENDING" in line for line in q.splitlines() if line.startswith(array)):
                marks.setdefault("array", now)
            if not q.strip():
                marks["final"] = now
                break
            if now > 7200:
                return None, "jobs still queued after 2 h"
            time.sleep(0.5)
        if not (base / "ds" / "derivatives" / "brainformer" / "shards").is_dir():
            logs = {p.name: p.read_text()[-500:] for p in base.glob("bf-*.log")}
            return None, f"the jobs ended without shards: {logs}"
        return marks, None
    finally:
        subprocess.run([LOCAL_SLURM, "stop", state], capture_output=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default="bench-data")
    ap.add_argument("--max-runs", type=int, default=6, help="at most this many full-size runs")
    ap.add_argument("--no-slurm", action="store_true")
    args = ap.parse_args()
    out = Path(args.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    runs_real = real_runs()
    real_bytes = sum(b for _, b in runs_real)
    per_subject = {}
    for s, b in runs_real:
        per_subject[s] = per_subject.get(s, 0) + b
    # A run here needs its raw file (~870 MB), its scratch while it is cleaned (≤ 2× that),
    # and its derivatives (~0.3× that): 3.5 GB each is ample; keep 10 GB free besides.
    free = shutil.disk_usage(out).free
    n = max(1, min(args.max_runs, int((free - 10e9) // 3.5e9)))
    base, raw_bytes = make_dataset(out / "dataset-bench", n)
    rows = {jobs: local(base, jobs) for jobs in (1, 2)}
    sizes = derivative_bytes(base / "ds")
    marks, why = (None, "--no-slurm") if args.no_slurm else slurm(base, 2)
    load = os.getloadavg()

    scale = real_bytes / raw_bytes
    print(f"### The whole of ds000117 ({len(runs_real)} task runs, {real_bytes / 1e9:.1f} GB of raw FIF "
          f"by its listing), from {n} full-size runs measured here ({raw_bytes / 1e9:.2f} GB)\n")
    print(f"Machine: {os.cpu_count()} cores, load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}. "
          f"Command: `.venv/bin/python bench/bench_dataset.py --out-dir bench-data --max-runs {args.max_runs}`.\n")
    print("| measured on the runs here | --jobs 1 | --jobs 2 |")
    print("|---|---|---|")
    for k in ("ingest", "segment", "tokenize", "total"):
        label = {"segment": "segment (per-run: read, clean, windows)", "tokenize": "tokenize (fit tokenizer, tokens, shards)"}.get(k, k)
        print(f"| {label} (s) | {rows[1][k]:.1f} | {rows[2][k]:.1f} |")
    print(f"| per run, end to end (s) | {rows[1]['total'] / n:.1f} | {rows[2]['total'] / n:.1f} |")
    print(f"| peak RSS of one command (MiB) | {rows[1]['rss']:.0f} | {rows[2]['rss']:.0f} |")
    if marks:
        print(f"| one-node SLURM, 2-task array + final job (s, submit to end) | array {marks['array']:.1f}, "
              f"all {marks['final']:.1f} | |")
    print()
    print("Derivatives per run (measured, one full-size run; the real runs scale with their size):\n")
    print("| file | MB per run | whole dataset (GB) |")
    print("|---|---|---|")
    for k, v in sizes.items():
        print(f"| {k} | {v / n / 1e6:.0f} | {v * scale / 1e9:.1f} |")
    print("| scratch while a run is cleaned (float32 FIF: f32 copy, else f64; freed after) | "
          f"{raw_bytes / n / 1e6:.0f}–{2 * raw_bytes / n / 1e6:.0f} | one per concurrent run |")
    print()
    t2 = rows[2]
    here = t2["total"] * scale
    print("Projection (time and bytes scale with the runs' sizes):\n")
    print(f"- **this machine, --jobs 2:** {here / 3600:.1f} h for the {len(runs_real)} runs "
          f"(ingest {t2['ingest'] * scale / 60:.0f} min, per-run stages {t2['segment'] * scale / 3600:.1f} h, "
          f"tokens and shards {t2['tokenize'] * scale / 3600:.1f} h); disk: {sizes['all of derivatives/brainformer'] * scale / 1e9:.0f} GB "
          f"of derivatives beside the {real_bytes / 1e9:.0f} GB of raw data.")
    # 16 tasks, one subject each, on nodes like this one: the array phase lasts as long as the
    # largest subject's per-run stages; the final job tokenizes every run and writes the shards
    # on one node.
    largest = max(per_subject.values())
    array_s = t2["segment"] * largest / raw_bytes
    final_s = t2["tokenize"] * scale
    print(f"- **16-task SLURM array** (one subject per task, nodes like this one with --jobs 2): array "
          f"{array_s / 60:.0f} min (the largest subject, {largest / 1e9:.2f} GB), then the final job "
          f"{final_s / 60:.0f} min on one node = {(array_s + final_s) / 60:.0f} min, plus queueing.")
    if marks:
        print(f"- measured on the one-node SLURM with 2 tasks (1 CPU each) on these {n} runs: array "
              f"{marks['array']:.1f} s, final job done at {marks['final']:.1f} s "
              f"(local --jobs 2: per-run stages {t2['segment']:.1f} s, the rest {t2['tokenize']:.1f} s).")
    else:
        print(f"- SLURM not measured: {why}")
    print("\n```json")
    print(json.dumps({"runs": n, "raw_bytes": raw_bytes, "local": rows, "derivatives": sizes, "slurm": marks}, indent=1))
    print("```")


if __name__ == "__main__":
    main()
