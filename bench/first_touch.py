"""What memory touched for the first time costs on this machine, beside rewriting it.

Maps 400 MiB of fresh anonymous memory, sets every byte (the first pass faults each page in:
the kernel zeroes it, and on a VM whose host backs guest memory lazily the host backs it
too), then sets it twice more (pages already there). A large gap between the two is why a
stage's peak RSS, all of it first-touched, costs time as well as memory (BENCHMARKS.md,
"Session 19"). Not part of `make bench`: a measurement of the machine, not of our code.

    .venv/bin/python bench/first_touch.py
"""
import ctypes
import mmap
import time

N = 400 << 20


def main():
    m = mmap.mmap(-1, N)
    addr = ctypes.addressof((ctypes.c_char * N).from_buffer(m))
    for i in range(3):
        t0 = time.perf_counter()
        ctypes.memset(addr, i + 1, N)
        dt = time.perf_counter() - t0
        print(f"{'first touch' if i == 0 else 'rewrite    '}: {dt:.3f} s, {N / dt / 1e9:.2f} GB/s")


if __name__ == "__main__":
    main()
