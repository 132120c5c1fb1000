"""The environment of `make test`'s second notebook run: what another CPU would compute.

Each setting sends one library down another kernel than this machine's own:
torch's generic ATen kernels instead of AVX2/AVX-512 ones, an older OpenBLAS core for
NumPy/SciPy matrix products, NumPy's ufuncs without their AVX-512 (x86-64-v4) loops
where the CPU has them, and TensorFlow through oneDNN limited to AVX2 (``setup()``
keeps oneDNN off unless the environment turns it on). ``python scripts/emulated_cpu.py``
prints the settings as ``NAME=value`` words for the Makefile.
"""
from __future__ import annotations

import platform
from pathlib import Path


def _has_avx512() -> bool:
    try:
        return " avx512f " in Path("/proc/cpuinfo").read_text().replace("\n", " ")
    except OSError:
        return False


ARM = platform.machine() in ("aarch64", "arm64")
EMULATED_CPU = {
    "ATEN_CPU_CAPABILITY": "default",
    "OPENBLAS_CORETYPE": "ARMV8" if ARM else "Prescott",
    "TF_ENABLE_ONEDNN_OPTS": "1",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
if _has_avx512():  # NumPy refuses to disable a feature the CPU lacks
    EMULATED_CPU["NPY_DISABLE_CPU_FEATURES"] = "X86_V4"

if __name__ == "__main__":
    print(" ".join(f"{name}={value}" for name, value in EMULATED_CPU.items()))
