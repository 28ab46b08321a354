"""Is the regression Crossformer's failure on the physics fixture ours or the seed's? (issue 15)

Independent of our Rust code: pyarrow reads continuous shards, the inputs are scaled as
`bf_pipeline::shards::value_scale` and model/src/data.rs do (per channel, the 99th percentile
of |x| over the first 256 training windows, then clamped to [-1, 1]; EEG then MEG), cut into
examples of --length steps, and PyTorch fits, with AdamW, batch 16, the same number of steps:
a per-step linear map EEG(t) -> MEG(t); the seed's `CrossFormer` (../shared/seed/continuous,
one encoder and one decoder layer, patch 4, 2 heads, as the demo flags); and the seed's model
with the projected encoder memory added to the decoder state (its decoder otherwise reads the
EEG only through a cross-attention whose queries are the same for every example). Prints the
mean per-channel r (over all examples pooled) on the training examples and on the test split.
`--checkpoint DIR` also loads one of our bf-train checkpoints into the seed's class (names
are the seed's) and scores it the same way. Also prints how the scale behaves: the clamped
share and the scale over the one computed from interior windows only.

    .venv/bin/python bench/physics_regression_check.py SHARDS [--steps 600] [--checkpoint RUN/last]
"""
import argparse
import glob
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT.parent / "shared" / "seed" / "continuous"))
from models.crossformer import CrossFormer  # noqa: E402

W = 256


def load(shards, split):
    eeg, meg, win = [], [], []
    for f in sorted(glob.glob(f"{shards}/**/{split}-*.parquet", recursive=True)):
        t = pq.read_table(f)
        for e, m in zip(t.column("eeg").to_pylist(), t.column("meg").to_pylist()):
            eeg.append(np.asarray(e, np.float32).reshape(-1))
            meg.append(np.asarray(m, np.float32).reshape(-1))
        win.extend(t.column("window").to_numpy())
    ne, nm = eeg[0].size // W, meg[0].size // W
    return np.stack(eeg).reshape(-1, ne, W), np.stack(meg).reshape(-1, nm, W), np.asarray(win)


def q99(x):
    return np.percentile(np.abs(x[:256]).transpose(1, 0, 2).reshape(x.shape[1], -1), 99, axis=1).astype(np.float32)


def examples(x, scale, length):
    x = np.clip(x / scale[None, :, None], -1, 1)
    n, c, _ = x.shape
    return torch.tensor(x.reshape(n, c, W // length, length).transpose(0, 2, 3, 1).reshape(-1, length, c).copy())


def pearson(p, y):
    p, y = p - p.mean((0, 1)), y - y.mean((0, 1))
    return ((p * y).sum((0, 1)) / (p.norm(dim=(0, 1)) * y.norm(dim=(0, 1)) + 1e-12)).mean().item()


class MemoryResidual(CrossFormer):
    """The seed's forward, but each decoder layer's state is proj(memory) + cross-attention."""

    def forward(self, src):
        mem = self.encoder(self.pos_embed_encoder(self.src_patcher(src)))
        x = self.pos_embed_decoder(self.tgt_patcher(self.initial_tgt.expand(src.shape[0], -1, -1)))
        d = self.decoder
        for i in range(len(d.self_attn_layers)):
            s = d.self_attn_layers[i](x)
            m = d.encoder_proj_layers[i](mem)
            x = m + d.cross_attn_layers[i](s, m, m)[0]
        return torch.tanh(self.depatcher(x))


def predict(model, x):
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[j:j + 64]) for j in range(0, x.shape[0], 64)])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shards")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--checkpoint", help="a bf-train checkpoint folder to score the same way")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    e, m, win = load(args.shards, "train")
    et, mt, _ = load(args.shards, "test")
    se, sm = q99(e), q99(m)
    inner = ~(np.r_[True, np.diff(win) != 1] | np.r_[np.diff(win) != 1, True])
    print(f"clamped after scaling: EEG {(np.abs(e / se[None, :, None]) >= 1).mean():.4f} "
          f"MEG {(np.abs(m / sm[None, :, None]) >= 1).mean():.4f}; scale over the interior windows' scale "
          f"(median): EEG {np.median(se / q99(e[inner])):.2f} MEG {np.median(sm / q99(m[inner])):.2f}")
    x, y = examples(e, se, args.length), examples(m, sm, args.length)
    xt, yt = examples(et, se, args.length), examples(mt, sm, args.length)
    print(f"training examples {tuple(x.shape)} -> {tuple(y.shape)}, test {xt.shape[0]}; "
          f"scaled std EEG {x.std():.3f} MEG {y.std():.3f}", flush=True)
    ne, nm = x.shape[2], y.shape[2]
    kw = dict(src_num_channels=ne, tgt_num_channels=nm, max_sequence_length=args.length, patch_size=4,
              num_heads=2, num_enc_layers=1, num_dec_layers=1)
    if args.checkpoint:
        from safetensors.torch import load_file
        model = CrossFormer(**kw)
        model.load_state_dict(load_file(str(Path(args.checkpoint) / "model.safetensors")))
        print(f"{args.checkpoint} (ours) in the seed's class: r train {pearson(predict(model, x), y):.3f} "
              f"test {pearson(predict(model, xt), yt):.3f}", flush=True)
    fits = [("linear per step (lr 1e-2)", lambda: torch.nn.Linear(ne, nm), 1e-2),
            ("seed CrossFormer (lr 1e-3)", lambda: CrossFormer(**kw), 1e-3),
            ("seed + memory residual (lr 1e-3)", lambda: MemoryResidual(**kw), 1e-3)]
    for name, make, lr in fits:
        torch.manual_seed(0)
        model = make()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        g, t0 = torch.Generator().manual_seed(1), time.time()
        model.train()
        for _ in range(args.steps):
            i = torch.randint(0, x.shape[0], (16,), generator=g)
            loss = torch.nn.functional.mse_loss(model(x[i]), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"{name}, {args.steps} steps: r train {pearson(predict(model, x), y):.3f} "
              f"test {pearson(predict(model, xt), yt):.3f} ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
