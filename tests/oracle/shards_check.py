"""Checks a shard directory (`pipeline/src/shards.rs`) with the readers users have: pyarrow,
polars and Hugging Face `datasets`, plus the dataset card the Hub reads.

    from shards_check import check_shards
    summary = check_shards(out_dir, n_eeg=70, n_meg=306, window=256)            # tokens
    check_shards(out_dir, n_eeg, n_meg, window, kind="continuous")

or from a shell:

    .venv/bin/python tests/oracle/shards_check.py OUT_DIR N_EEG N_MEG WINDOW [tokens|continuous]

It asserts:
- layout: `OUT/README.md`, `OUT/data/{split}-{k:05d}-of-{n:05d}.parquet` with k = 0..n-1, no
  leftover temporary files;
- the card: YAML front matter parses; `configs` has the `default` config whose `data_files`
  globs match exactly the shards of each split (and every shard belongs to one split);
  `dataset_info.features` equals the row features; license, tags present;
- pyarrow (streamed row group by row group): column names and types, `eeg` n_eeg × window and
  `meg` n_meg × window on every row, tokens in 0..254, `*_lo`/`*_hi` of the right lengths with
  lo < hi and equal to the tokenizer in the metadata, non-null subject; the key-value metadata
  (`brainformer.*`) present and consistent across files;
- polars: same schema (String, UInt32, Float64, List(List(UInt8 | Float32)), List(Float32)),
  same number of rows, same first row as pyarrow;
- datasets: `load_dataset("parquet", data_files={"train": ".../data/train-*.parquet", ...})`,
  `load_dataset(OUT)` (through the card) and streaming all give the expected row counts and
  (n_eeg, window) / (n_meg, window) arrays; through the card the features are exactly the
  standard ones (`string`, `List(List(uint8))`, ...); the plain parquet path infers them from
  the files' Arrow types, which polars writes as `string_view` and `large_list`, so there
  the check accepts those equivalents.

Returns {"splits": {split: {"files": n, "rows": rows}}, "metadata": {...}}.
"""
import fnmatch
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

SHARD_RE = re.compile(r"^(?P<split>.+)-(?P<k>\d{5,})-of-(?P<n>\d{5,})\.parquet$")
ID_COLUMNS = ["subject", "session", "task", "run", "window", "onset"]
TOKEN_MAX = 254


def _columns(kind):
    cols = ID_COLUMNS + ["eeg", "meg"]
    if kind == "tokens":
        cols += ["eeg_lo", "eeg_hi", "meg_lo", "meg_hi"]
    return cols


def _front_matter(readme):
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n"), f"{readme}: no YAML front matter"
    end = text.index("\n---\n", 4)
    card = yaml.safe_load(text[4:end])
    assert isinstance(card, dict), f"{readme}: front matter is not a mapping"
    return card, text[end + 5:]


def _is_list(t):
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t) \
        or pa.types.is_large_list_view(t)


def _is_str(t):
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _layout(shard_dir):
    data = shard_dir / "data"
    assert (shard_dir / "README.md").is_file(), f"{shard_dir}/README.md is missing"
    assert data.is_dir(), f"{data} is missing"
    splits = {}
    for p in sorted(data.iterdir()):
        assert not p.name.startswith("."), f"leftover temporary file {p}"
        m = SHARD_RE.match(p.name)
        if m:
            splits.setdefault(m["split"], []).append((int(m["k"]), int(m["n"]), p))
    assert splits, f"no shards in {data}"
    files = {}
    for split, entries in splits.items():
        ns = {n for _, n, _ in entries}
        assert len(ns) == 1, f"split {split}: shards from different runs ({sorted(ns)} shards)"
        n = ns.pop()
        assert sorted(k for k, _, _ in entries) == list(range(n)), \
            f"split {split}: expected shards 0..{n - 1}, found {sorted(k for k, _, _ in entries)}"
        files[split] = [p for _, _, p in sorted(entries)]
    return files


def _expected_features(kind):
    import datasets
    leaf = "uint8" if kind == "tokens" else "float32"
    seq = datasets.Sequence  # List in datasets ≥ 4, Sequence before
    f = {"subject": datasets.Value("string"), "session": datasets.Value("string"),
         "task": datasets.Value("string"), "run": datasets.Value("string"),
         "window": datasets.Value("uint32"), "onset": datasets.Value("float64"),
         "eeg": seq(seq(datasets.Value(leaf))), "meg": seq(seq(datasets.Value(leaf)))}
    if kind == "tokens":
        for name in ["eeg_lo", "eeg_hi", "meg_lo", "meg_hi"]:
            f[name] = seq(datasets.Value("float32"))
    return datasets.Features(f)


def _same_up_to_views(got, want):
    """`got` equals `want` where string_view/large_string count as string and LargeList as List."""
    import datasets
    if isinstance(want, dict):
        return isinstance(got, dict) and list(got) == list(want) and \
            all(_same_up_to_views(got[k], want[k]) for k in want)
    if isinstance(want, datasets.Value):
        alias = {"string_view": "string", "large_string": "string"}
        return isinstance(got, datasets.Value) and alias.get(got.dtype, got.dtype) == want.dtype
    inner = getattr(want, "feature", None)
    large = getattr(datasets, "LargeList", None)
    kinds = tuple(t for t in (type(want), large) if t is not None)
    return isinstance(got, kinds) and _same_up_to_views(got.feature, inner)


def _check_card(shard_dir, files, kind):
    import datasets
    card, body = _front_matter(shard_dir / "README.md")
    assert card.get("license"), "card: no license"
    assert card.get("tags"), "card: no tags"
    configs = card.get("configs")
    assert isinstance(configs, list) and configs, "card: no configs"
    default = [c for c in configs if c.get("config_name") == "default"]
    assert len(default) == 1, "card: no (single) default config"
    data_files = default[0]["data_files"]
    declared = {d["split"]: d["path"] for d in data_files}
    assert set(declared) == set(files), f"card declares splits {sorted(declared)}, files have {sorted(files)}"
    all_rel = sorted(str(p.relative_to(shard_dir)) for fs in files.values() for p in fs)
    for split, pattern in declared.items():
        patterns = pattern if isinstance(pattern, list) else [pattern]
        matched = sorted(r for r in all_rel if any(fnmatch.fnmatchcase(r, pat) for pat in patterns))
        want = sorted(str(p.relative_to(shard_dir)) for p in files[split])
        assert matched == want, f"card: glob {pattern} of {split} matches {matched}, expected {want}"
    features = datasets.Features._from_yaml_list(card["dataset_info"]["features"])
    assert features == _expected_features(kind), f"card features {features}"
    for needle in ["load_dataset", "## Parameters"] + (["def decode("] if kind == "tokens" else []):
        assert needle in body, f"card body lacks {needle!r}"
    return card


def _check_metadata(path, n_eeg, n_meg, window, kind):
    md = pq.read_metadata(path).metadata or {}
    md = {k.decode(): v.decode() for k, v in md.items()}
    for key in ["brainformer.format", "brainformer.kind", "brainformer.eeg_channels",
                "brainformer.meg_channels", "brainformer.sfreq", "brainformer.window",
                "brainformer.params"]:
        assert key in md, f"{path}: key-value metadata {key} missing"
    assert md["brainformer.kind"] == kind, f"{path}: kind {md['brainformer.kind']}"
    eeg_ch = json.loads(md["brainformer.eeg_channels"])
    meg_ch = json.loads(md["brainformer.meg_channels"])
    assert len(eeg_ch) == n_eeg and len(meg_ch) == n_meg, f"{path}: {len(eeg_ch)} EEG / {len(meg_ch)} MEG channels"
    assert json.loads(md["brainformer.window"]) == window, f"{path}: window {md['brainformer.window']}, expected {window}"
    assert json.loads(md["brainformer.sfreq"]) > 0, f"{path}: sfreq {md['brainformer.sfreq']}"
    tok = None
    if kind == "tokens":
        assert "brainformer.tokenizer" in md, f"{path}: no tokenizer in the metadata"
        tok = json.loads(md["brainformer.tokenizer"])
        assert tok["channels"] == eeg_ch + meg_ch, f"{path}: tokenizer channels are not EEG + MEG"
        assert tok["levels"] - 1 == TOKEN_MAX and len(tok["lo"]) == n_eeg + n_meg
        assert all(lo < hi for lo, hi in zip(tok["lo"], tok["hi"]))
    else:
        assert "brainformer.tokenizer" not in md
    return {k: v for k, v in md.items() if k != "ARROW:schema"}, tok


def _check_pyarrow(path, n_eeg, n_meg, window, kind, tok):
    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow
    assert schema.names == _columns(kind), f"{path}: columns {schema.names}"
    for c in ["subject", "session", "task", "run"]:
        assert _is_str(schema.field(c).type), f"{path}: {c} is {schema.field(c).type}"
    assert schema.field("window").type == pa.uint32()
    assert schema.field("onset").type == pa.float64()
    leaf = pa.uint8() if kind == "tokens" else pa.float32()
    for c in ["eeg", "meg"]:
        t = schema.field(c).type
        assert _is_list(t) and _is_list(t.value_type) and t.value_type.value_type == leaf, f"{path}: {c} is {t}"
    if kind == "tokens":
        for c in ["eeg_lo", "eeg_hi", "meg_lo", "meg_hi"]:
            t = schema.field(c).type
            assert _is_list(t) and t.value_type == pa.float32(), f"{path}: {c} is {t}"
        n = n_eeg + n_meg
        tok_lo = np.asarray(tok["lo"], dtype=np.float32)
        tok_hi = np.asarray(tok["hi"], dtype=np.float32)
    rows = 0
    first = None
    for batch in pf.iter_batches(batch_size=256):
        rows += batch.num_rows
        if first is None and batch.num_rows:
            first = batch.slice(0, 1).to_pylist()[0]
        assert batch.column("subject").null_count == 0, f"{path}: null subject"
        assert batch.column("window").null_count == 0 and batch.column("onset").null_count == 0
        for c, nch in [("eeg", n_eeg), ("meg", n_meg)]:
            col = batch.column(c)
            assert col.null_count == 0, f"{path}: null {c}"
            lens = pc.list_value_length(col).to_numpy(zero_copy_only=False)
            assert (lens == nch).all(), f"{path}: {c} rows with {sorted(set(lens.tolist()))} channels, expected {nch}"
            inner = pc.list_flatten(col)
            ilens = pc.list_value_length(inner).to_numpy(zero_copy_only=False)
            assert (ilens == window).all(), f"{path}: {c} channels of {sorted(set(ilens.tolist()))} samples, expected {window}"
            values = pc.list_flatten(inner)
            assert values.null_count == 0, f"{path}: null values in {c}"
            if kind == "tokens" and len(values):
                assert pc.max(values).as_py() <= TOKEN_MAX, f"{path}: {c} token above {TOKEN_MAX}"
            if kind == "continuous" and len(values):
                assert np.isfinite(values.to_numpy(zero_copy_only=False)).all(), f"{path}: non-finite {c}"
        if kind == "tokens" and batch.num_rows:
            for c, sl in [("eeg_lo", slice(0, n_eeg)), ("eeg_hi", slice(0, n_eeg)),
                          ("meg_lo", slice(n_eeg, n)), ("meg_hi", slice(n_eeg, n))]:
                col = batch.column(c)
                lens = pc.list_value_length(col).to_numpy(zero_copy_only=False)
                assert (lens == sl.stop - sl.start).all(), f"{path}: {c} lengths {sorted(set(lens.tolist()))}"
                vals = pc.list_flatten(col).to_numpy(zero_copy_only=False).reshape(batch.num_rows, -1)
                want = (tok_lo if c.endswith("_lo") else tok_hi)[sl]
                assert (vals == want[None, :]).all(), f"{path}: {c} differs from the tokenizer's clamps"
    assert rows == pf.metadata.num_rows
    return rows, first


def _check_polars(path, rows, first, kind):
    df = pl.read_parquet(path)
    leaf = pl.UInt8 if kind == "tokens" else pl.Float32
    want = {"subject": pl.String, "session": pl.String, "task": pl.String, "run": pl.String,
            "window": pl.UInt32, "onset": pl.Float64, "eeg": pl.List(pl.List(leaf)),
            "meg": pl.List(pl.List(leaf))}
    if kind == "tokens":
        want.update({c: pl.List(pl.Float32) for c in ["eeg_lo", "eeg_hi", "meg_lo", "meg_hi"]})
    assert list(df.schema.items()) == list(want.items()), f"{path}: polars schema {df.schema}"
    assert df.height == rows, f"{path}: polars reads {df.height} rows, pyarrow {rows}"
    if rows:
        row = df.row(0, named=True)
        for c in ["subject", "session", "task", "run", "window", "onset"]:
            assert row[c] == first[c], f"{path}: polars {c}={row[c]!r}, pyarrow {first[c]!r}"
        for c in ["eeg", "meg"]:
            assert np.array_equal(np.asarray(row[c]), np.asarray(first[c])), f"{path}: polars {c} differs"


def _check_datasets(shard_dir, files, rows_per_split, n_eeg, n_meg, window, kind, full):
    import datasets
    datasets.disable_progress_bars()
    expected = _expected_features(kind)
    data_files = {s: str(shard_dir / "data" / f"{s}-*.parquet") for s in files}
    with tempfile.TemporaryDirectory() as cache:
        loaders = [("parquet", lambda: datasets.load_dataset("parquet", data_files=data_files, cache_dir=cache)),
                   ("card", lambda: datasets.load_dataset(str(shard_dir), cache_dir=cache))]
        for name, load in loaders if full else []:
            dd = load()
            assert set(dd) == set(files), f"datasets ({name}): splits {sorted(dd)}"
            for split, ds in dd.items():
                if name == "card":
                    assert ds.features == expected, f"datasets ({name}) {split}: features {ds.features}"
                else:
                    assert _same_up_to_views(dict(ds.features), dict(expected)), \
                        f"datasets ({name}) {split}: features {ds.features}"
                assert ds.num_rows == rows_per_split[split], \
                    f"datasets ({name}) {split}: {ds.num_rows} rows, expected {rows_per_split[split]}"
                if ds.num_rows:
                    r = ds.with_format("numpy", dtype=np.uint8 if kind == "tokens" else np.float32)[0]
                    assert r["eeg"].shape == (n_eeg, window), f"datasets ({name}): eeg {r['eeg'].shape}"
                    assert r["meg"].shape == (n_meg, window), f"datasets ({name}): meg {r['meg'].shape}"
                    if kind == "tokens":
                        assert r["eeg_lo"].shape == (n_eeg,) and r["meg_hi"].shape == (n_meg,)
        for split in files:
            if not rows_per_split[split]:
                continue
            it = datasets.load_dataset("parquet", data_files={split: data_files[split]}, split=split, streaming=True)
            r = next(iter(it))
            assert np.asarray(r["eeg"]).shape == (n_eeg, window), "datasets (streaming): eeg shape"
            assert np.asarray(r["meg"]).shape == (n_meg, window), "datasets (streaming): meg shape"


def check_shards(shard_dir, n_eeg, n_meg, window, kind="tokens", full_datasets=True):
    """Asserts everything listed in the module docstring. `full_datasets=False` skips the two
    non-streaming `datasets` loads (they copy every row into datasets' Arrow cache)."""
    shard_dir = Path(shard_dir)
    assert kind in ("tokens", "continuous"), kind
    files = _layout(shard_dir)
    _check_card(shard_dir, files, kind)
    summary = {"splits": {}, "metadata": None}
    rows_per_split = {}
    for split, paths in files.items():
        total = 0
        for p in paths:
            md, tok = _check_metadata(p, n_eeg, n_meg, window, kind)
            if summary["metadata"] is None:
                summary["metadata"] = md
            assert md == summary["metadata"], f"{p}: key-value metadata differs from the other shards'"
            rows, first = _check_pyarrow(p, n_eeg, n_meg, window, kind, tok)
            _check_polars(p, rows, first, kind)
            total += rows
        rows_per_split[split] = total
        summary["splits"][split] = {"files": len(paths), "rows": total}
    _check_datasets(shard_dir, files, rows_per_split, n_eeg, n_meg, window, kind, full_datasets)
    return summary


if __name__ == "__main__":
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    out = check_shards(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
                       *(sys.argv[5:6] or ["tokens"]))
    print(json.dumps(out["splits"], indent=1))
    print("ok")
