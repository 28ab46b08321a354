"""libtorch through the installed binary: bf-train runs a matmul with no LD_LIBRARY_PATH,
so a broken rpath or a libtorch that does not load fails the suite."""
import json
import os
import subprocess

import torch

from conftest import bin_path


def test_bf_train_self_check_runs_a_matmul_without_ld_library_path():
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    proc = subprocess.run([bin_path("bf-train"), "--self-check", "--device", "cpu"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    expected = (torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
                @ torch.tensor([[5.0, 6.0], [7.0, 8.0]], dtype=torch.float64)).flatten().tolist()
    assert out["matmul"] == expected
    assert out["device"] == "Cpu"


def test_binary_links_the_venv_libtorch():
    """The rpath points at this venv's torch/lib (the torch==2.13.0 that setup installs)."""
    assert torch.__version__.startswith("2.13.0")
    ldd = subprocess.run(["ldd", str(bin_path("bf-train"))], capture_output=True, text=True).stdout
    torch_lib = os.path.realpath(os.path.join(os.path.dirname(torch.__file__), "lib"))
    lines = [l for l in ldd.splitlines() if "libtorch_cpu.so" in l]
    assert lines and torch_lib in os.path.realpath(lines[0].split("=>")[1].split("(")[0].strip()), ldd


def test_unknown_device_is_a_clear_error():
    proc = subprocess.run([bin_path("bf-train"), "--self-check", "--device", "tpu"], capture_output=True, text=True)
    assert proc.returncode != 0 and "tpu" in proc.stderr
