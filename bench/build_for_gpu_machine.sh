#!/usr/bin/env bash
# Builds the binaries for a lent GPU machine and packs them for bench/gpu_check.sh.
#
#   bash bench/build_for_gpu_machine.sh [TORCH_VERSION]     (default 2.11.0)
#
# Why: the GPU machine has its own PyTorch (2.11.0+cu130 in 2026-11), no Rust toolchain and
# no registry, and at most 64 MiB travel with a call, so our venv's libtorch 2.13 (gigabytes
# with its CUDA libraries) cannot go along, and a binary built against 2.13 does not run on
# 2.11's libtorch (the C++ ABI differs: `reshape` receives a garbage size). So we build once
# more against that version's headers:
#   1. download its wheel (PyPI) and unpack include/ and lib/ into $WORK;
#   2. a stand-in `python3` answers torch-sys's build script with that libtorch's paths;
#   3. a copy of torch-sys 0.26 whose generated wrappers for ops that version lacks (found
#      by compiling, so nothing is listed by hand) throw instead, patched in with
#      `cargo --config patch...` (Cargo.toml is not touched; Cargo.lock is put back);
#   4. strip + xz the four binaries into .dev/ (git-ignored), copy the seed's token code;
#   5. rebuild the normal binaries against the venv's libtorch.
# Takes ~10 min on 2 cores (two relinks of tch and the CLI); target/ is shared, so nothing
# else should build meanwhile.
set -euo pipefail
V=${1:-2.11.0}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/tmp/bf-torch-$V}
cd "$ROOT"
mkdir -p "$WORK/bin" .dev/seed

if [ ! -d "$WORK/torch/lib" ]; then
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: "torch==$V" -d "$WORK"
  unzip -q -o "$WORK"/torch-"$V"-*.whl 'torch/include/*' 'torch/lib/*' -d "$WORK"
fi

cat > "$WORK/bin/python3" <<EOF
#!/bin/bash
# Stand-in for a Python with torch $V, for torch-sys's build script and torch-cli/build.rs.
case "\$2" in
  *LIBTORCH_VERSION*)
    echo "LIBTORCH_VERSION: $V"; echo "LIBTORCH_CXX11: True"
    echo "LIBTORCH_INCLUDE: $WORK/torch/include"
    echo "LIBTORCH_INCLUDE: $WORK/torch/include/torch/csrc/api/include"
    echo "LIBTORCH_LIB: $WORK/torch/lib";;
  *"'lib'"*) echo "$WORK/torch/lib";;
  *) exec $ROOT/.venv/bin/python "\$@";;
esac
EOF
chmod +x "$WORK/bin/python3"
cp "$WORK/bin/python3" "$WORK/bin/python"

SRC=$(ls -d "$HOME"/.cargo/registry/src/*/torch-sys-0.26.0 | head -n 1)
rm -rf "$WORK/torch-sys"
cp -r "$SRC" "$WORK/torch-sys"
GEN="$WORK/torch-sys/libtch/torch_api_generated.cpp"
g++ -std=c++17 -fsyntax-only -D_GLIBCXX_USE_CXX11_ABI=1 -I"$WORK/torch/include" \
  -I"$WORK/torch/include/torch/csrc/api/include" "$GEN" 2> "$WORK/errors.txt" || true
python3 - "$GEN" "$WORK/errors.txt" <<'EOF'
import re, sys
gen, errors = sys.argv[1], sys.argv[2]
bad = sorted({int(m) for m in re.findall(r"torch_api_generated\.cpp:(\d+):\d+: error", open(errors).read())})
lines = open(gen).read().split("\n")
stubbed = []
for ln in bad:
    start = ln - 1
    while not re.match(r"^\w[\w\s\*]* atg_\w+\(", lines[start]):
        start -= 1
    end = ln - 1
    while lines[end] != "}":
        end += 1
    if "not available in this libtorch" in lines[start + 1]:
        continue
    stubbed.append(lines[start].split("(")[0].split()[-1])
    body = ['  PROTECT(throw std::runtime_error("not available in this libtorch");)']
    lines[start + 1:end] = body + [""] * (end - start - 1 - len(body))
open(gen, "w").write("\n".join(lines))
print(f"stubbed {len(stubbed)} wrappers of ops this libtorch lacks: {', '.join(stubbed)}")
EOF

cp Cargo.lock "$WORK/Cargo.lock.saved"
build() {
  cargo build --release -p brainformer-cli -p brainformer-torch-cli -p brainformer-fixtures --bins "$@" 2>&1 | grep -E "^(error|warning: unused)|Finished" || true
}
PATH="$WORK/bin:$PATH" PYTHON_SYS_EXECUTABLE="$WORK/bin/python3" LIBTORCH_BYPASS_VERSION_CHECK=1 \
  build --config "patch.crates-io.torch-sys.path=\"$WORK/torch-sys\""
cp "$WORK/Cargo.lock.saved" Cargo.lock
for b in bf-train bf-eval bf-pipeline bf-fixtures; do
  cp target/release/$b "$WORK/$b" && strip "$WORK/$b" && xz -T0 -3 -c "$WORK/$b" > .dev/$b.xz && rm "$WORK/$b"
done
if [ -d ../shared/seed/token ]; then rm -rf .dev/seed/token && cp -r ../shared/seed/token .dev/seed/; fi
ls -la .dev

PATH="$ROOT/.venv/bin:$PATH" build
echo "packed for PyTorch $V in .dev/; on the GPU machine: bash bench/gpu_check.sh (carry .dev)"
