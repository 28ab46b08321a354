#!/usr/bin/env python3
"""Writes seed corpora for the fuzz targets into fuzz/corpus/<target>/ (git-ignored).

Seeds are derived at run time from MNE-Python's test files in ../shared/data (read-only,
third-party: never commit them or their derivatives). They are cut down (few channels, few
samples) because libFuzzer mutates small inputs far faster than megabyte-sized ones.

    .venv/bin/python fuzz/make_seeds.py          # from the repo root; FIF seeds need mne
"""
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("BF_MNE_DATA", HERE.parent.parent / "shared/data/mne-python"))
CORPUS = HERE / "corpus"


def out(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)
    print(f"{target}/{name}: {len(data)} bytes")


# ---- EDF / BDF: keep a few signals (and the annotation signal) and two records -------------
SIG_FIELDS = [16, 80, 8, 8, 8, 8, 8, 80, 8, 32]  # label .. nsamp, reserved


def shrink_edf(raw, keep_signals=3, keep_records=2):
    ns = int(raw[252:256])
    fields, pos = [], 256
    for w in SIG_FIELDS:
        fields.append([raw[pos + i * w: pos + (i + 1) * w] for i in range(ns)])
        pos += w * ns
    width = 3 if raw[0] == 0xFF else 2
    nsamp = [int(x) for x in fields[8]]
    labels = [x.decode("latin-1").strip() for x in fields[0]]
    keep = list(range(min(keep_signals, ns)))
    keep += [i for i, l in enumerate(labels) if l.endswith("Annotations") and i not in keep]
    rec_len = sum(nsamp) * width
    nrec = min(keep_records, (len(raw) - pos) // rec_len)
    head = bytearray(raw[:256])
    head[184:192] = f"{256 * (len(keep) + 1):<8}".encode()
    head[236:244] = f"{nrec:<8}".encode()
    head[252:256] = f"{len(keep):<4}".encode()
    for f in fields:
        head += b"".join(f[i] for i in keep)
    offs = [sum(nsamp[:i]) * width for i in range(ns)]
    body = bytearray()
    for r in range(nrec):
        base = pos + r * rec_len
        for i in keep:
            body += raw[base + offs[i]: base + offs[i] + nsamp[i] * width]
    return bytes(head + body)


def edf_seeds():
    for name in ["test.edf", "test.bdf"]:
        raw = (DATA / "edf/tests/data" / name).read_bytes()
        out("edf_open", f"small_{name}", shrink_edf(raw))
        out("edf_open", f"header_only_{name}", shrink_edf(raw, keep_records=0))


# ---- BrainVision: headers that name the target's fixed x.eeg (2 ch) / x.vmrk ----------------
def bv_seeds():
    text = (DATA / "brainvision/tests/data/test.vhdr").read_text(encoding="utf-8")
    text = text.replace("DataFile=test.eeg", "DataFile=x.eeg").replace("MarkerFile=test.vmrk", "MarkerFile=x.vmrk")
    out("brainvision_open", "test_32ch.vhdr", text.encode())  # full grammar; 32 ch do not fit x.eeg
    # The same header cut to 2 channels, so it opens against x.eeg and reaches the data.
    two = re.sub(r"NumberOfChannels=\d+", "NumberOfChannels=2", text)
    two = "\n".join(l for l in two.split("\n") if not re.match(r"Ch([3-9]|\d\d)=", l))
    out("brainvision_open", "test_2ch.vhdr", two.encode())
    out("brainvision_open", "min_2ch.vhdr", (
        "Brain Vision Data Exchange Header File Version 1.0\r\n\r\n"
        "[Common Infos]\r\nCodepage=UTF-8\r\nDataFile=x.eeg\r\nMarkerFile=x.vmrk\r\n"
        "DataFormat=BINARY\r\nDataOrientation=VECTORIZED\r\nNumberOfChannels=2\r\n"
        "SamplingInterval=2000\r\n\r\n[Binary Infos]\r\nBinaryFormat=INT_16\r\n\r\n"
        "[Channel Infos]\r\nCh1=Fp1,,0.1,µV\r\nCh2=HEOGL,,1,mV\r\n\r\n"
        "[Coordinates]\r\nCh1=1,-90,-72\r\nCh2=0,0,0\r\n"
    ).encode())


# ---- FIF: the KIT raw file, cut down by MNE, in several sample formats ---------------------
def fif_seeds():
    try:
        import mne
        import numpy as np
    except ImportError:
        print("mne not importable: no FIF seeds (run with the project's .venv python)", file=sys.stderr)
        return
    import tempfile

    src = DATA / "kit/tests/data/test_bin_raw.fif"
    raw = mne.io.read_raw_fif(src, preload=True, verbose="error")
    raw.pick(raw.ch_names[:4] + [c for c in raw.ch_names if c.startswith("STI")][:1]).crop(0, 0.02)
    names = raw.ch_names
    raw.info["bads"] = names[1:2]
    raw.set_annotations(mne.Annotations([0.005], [0.002], ["BAD_x"]))
    with raw.info._unlock():  # 5000 digitizer points are 100 kB of tags we do not read
        raw.info["dig"] = raw.info["dig"][:3]
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ["single", "double", "int", "short"]:
            p = Path(tmp) / f"{fmt}_raw.fif"
            raw.save(p, fmt=fmt, overwrite=True, verbose="error")
            out("fif_open", f"kit_{fmt}_raw.fif", p.read_bytes())
        proj = mne.Projection(
            data=dict(nrow=1, ncol=2, row_names=None, col_names=names[:2], data=np.array([[0.6, 0.8]])),
            desc="fuzz-proj", kind=1, active=False, explained_var=None,
        )
        raw2 = raw.copy().add_proj(proj)
        p = Path(tmp) / "proj_raw.fif"
        raw2.save(p, overwrite=True, verbose="error")
        out("fif_open", "kit_proj_raw.fif", p.read_bytes())
        # MNE writes no tag directory (pointer -1); real acquisition files do, so add one.
        out("fif_open", "kit_dir_raw.fif", add_fif_directory((Path(tmp) / "single_raw.fif").read_bytes()))


def add_fif_directory(b):
    import struct

    entries, pos = [], 0
    while pos + 16 <= len(b):
        kind, typ, size, nxt = struct.unpack(">iiii", b[pos:pos + 16])
        entries.append(struct.pack(">iiii", kind, typ, size, pos))
        if nxt == -1 or size < 0:
            break
        pos = nxt if nxt > 0 else pos + 16 + size
    dirpos = len(b)
    body = b"".join(entries) + struct.pack(">iiii", -1, -1, -1, -1)
    out = bytearray(b) + struct.pack(">iiii", 102, 32, len(body), -1) + body
    # The second tag (at byte 36) is FIFF_DIR_POINTER; its value follows its 16-byte header.
    assert struct.unpack(">i", out[36:40])[0] == 101
    out[52:56] = struct.pack(">i", dirpos)
    return bytes(out)


if __name__ == "__main__":
    edf_seeds()
    bv_seeds()
    fif_seeds()
