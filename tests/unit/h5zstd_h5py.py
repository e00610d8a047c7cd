"""h5zstd_h5py.py — h5py reads tessera's zstd-compressed datasets through the HDF5 plugin.

usage: HDF5_PLUGIN_PATH=<build>/hdf5-plugins python3 h5zstd_h5py.py FILE

FILE is written by tests/unit/test_h5zstd.c; the data formulas here repeat the ones there.
Exits 77 (skipped) when h5py is not installed (Debian: python3-h5py), 1 on any mismatch.
"""
import sys

try:
    import h5py
    import numpy as np
except ImportError as e:
    print(f"h5zstd_h5py: skipped, cannot import h5py/numpy ({e})")
    sys.exit(77)

FILTER_ID = 32015


def smooth_values(n):
    i = np.arange(n, dtype=np.int64)
    return (np.float32(0.25) * (i % 64).astype(np.float32) + (i // 4096).astype(np.float32))


def random_values(n):
    # xorshift32 from seed 2463534242 (Marsaglia's example: the first value is 723471715)
    out = np.empty(n, dtype=np.uint32)
    x = 2463534242
    for k in range(n):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out[k] = x
    return out


def check(name, got, want):
    if got.dtype != want.dtype or got.shape != want.shape:
        print(f"FAIL {name}: {got.dtype}{got.shape}, expected {want.dtype}{want.shape}")
        return 1
    bad = np.flatnonzero(got.view(np.uint8) != want.view(np.uint8))
    if bad.size:
        k = bad[0] // want.itemsize
        print(f"FAIL {name}: {bad.size} bytes differ, first at element {k}: "
              f"{got[k]!r}, expected {want[k]!r}")
        return 1
    return 0


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    failures = 0
    with h5py.File(sys.argv[1], "r") as f:
        expected = {"smooth": smooth_values(100000), "random": random_values(50000),
                    "fast": smooth_values(5000)}
        for name, want in expected.items():
            ds = f[name]
            # the dataset really goes through filter 32015 (h5py lists filters by id)
            if str(FILTER_ID) not in ds._filters:
                print(f"FAIL {name}: filter {FILTER_ID} not in the pipeline {ds._filters}")
                failures += 1
            failures += check(name, ds[...], want)
    if failures:
        return 1
    print("h5zstd_h5py: smooth, random and fast read back exactly through the plugin")
    return 0


if __name__ == "__main__":
    sys.exit(main())
