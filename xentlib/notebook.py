"""One call at the top of every chapter: quiet, seeded, reproducible notebooks.

``setup()`` must run before TensorFlow is imported anywhere in the kernel:
TensorFlow reads ``TF_CPP_MIN_LOG_LEVEL`` once, at import, and its C++ log
lines (timestamps, PIDs) would otherwise land in the stored outputs, where
nbval would see them differ on every run.
"""
from __future__ import annotations

import linecache
import logging
import os
import random
import site
import sys
import traceback
import warnings
from pathlib import Path


def setup(seed: int = 0):
    """Silence framework noise, fix every seed, use one thread, set print/plot defaults.

    In a notebook, errors from then on show only the notebook's own lines and the final
    error message, without library frames or the machine's paths (the seeds' failing code).

    Imports NumPy, TensorFlow and PyTorch (in that order, after the logging
    switches) and returns nothing; call :func:`seed_all` again before each
    training run that must be reproducible on its own.
    """
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ.setdefault("PYTHONHASHSEED", str(seed))  # for subprocesses; this kernel's is fixed at start
    # oneDNN off: bit-identical results from run to run on one machine. `make test` turns it
    # on (with other kernels) once, to check the book on what another CPU would compute.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*(oneDNN|cuda|CUDA|GPU).*")

    import numpy as np
    np.set_printoptions(precision=4, suppress=True, linewidth=100)

    import absl.logging
    absl.logging.set_verbosity(absl.logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)

    # One thread each: the book's models are tiny (threading costs more than it saves),
    # the results do not depend on the reader's core count, and two notebooks can run
    # side by side in CI on two cores.
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()

    import torch
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    import matplotlib
    matplotlib.rcParams.update({"figure.figsize": (6.4, 3.6), "figure.dpi": 100,
                                "axes.grid": True, "grid.alpha": 0.3})

    _short_tracebacks()
    seed_all(seed)


def _machine_prefixes() -> list[str]:
    """Folders a reader must not see in a message: the installs, the home folder, the book."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path.home()),
             str(Path(__file__).resolve().parents[1]), *site.getsitepackages()}
    return sorted((p for p in paths if p and p != os.sep), key=len, reverse=True)


def _without_machine_paths(text: str) -> str:
    for prefix in _machine_prefixes():
        text = text.replace(prefix + os.sep, "")
    return text


def _cell_frames_only(shell, etype, value, tb, tb_offset=None):
    """IPython error display, shortened: each notebook line on the way to the error, then the
    error itself; no library frames, no file paths."""
    if issubclass(etype, SyntaxError):  # IPython's own display already names the cell
        return shell.showsyntaxerror()
    cells = getattr(shell.compile, "_filename_map", {})  # cell file -> execution count
    lines = []
    for frame, lineno in traceback.walk_tb(tb):
        filename = frame.f_code.co_filename
        if filename in cells:
            code = linecache.getline(filename, lineno).strip()
            lines += [f"Cell In[{cells[filename]}], line {lineno}", f"----> {lineno} {code}", ""]
    final = "".join(traceback.format_exception_only(etype, value)).rstrip()
    shell._showtraceback(etype, value, [*lines, _without_machine_paths(final)])
    return None


def _short_tracebacks():
    """In a notebook (IPython), show errors as :func:`_cell_frames_only` does."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc((Exception,), _cell_frames_only)


def seed_all(seed: int = 0):
    """Seed Python, NumPy, PyTorch and TensorFlow/Keras in one call.

    ``XENTLIB_SEED_OFFSET`` (an integer, default 0) is added to every seed: it lets
    ``scripts/claim_spread.py`` rerun a notebook under other seeds without editing it.
    """
    seed += int(os.environ.get("XENTLIB_SEED_OFFSET", "0"))
    random.seed(seed)
    import numpy as np
    np.random.seed(seed)
    import torch
    torch.manual_seed(seed)
    import keras
    keras.utils.set_random_seed(seed)


class ClaimError(AssertionError):
    """A claim the book's prose makes from a measured result no longer holds."""


def _fmt(x) -> str:
    return f"{float(x):.4g}"


def expect(what: str, value, *, ge=None, gt=None, le=None, lt=None,
           near=None, atol: float = 0.0, rtol: float = 0.0) -> None:
    """Check one claim about a *measured* result and print what was checked.

    Measured results (training, timing, sampling, large float32 reductions) change in
    their last digits from one CPU to another, so notebooks do not compare them to the
    digit; they state each claim the prose makes as one ``expect`` line with an
    explicit tolerance. The line prints the value and the bound it met; when the claim
    stops holding it raises :class:`ClaimError` and the notebook fails.

    ``what`` is the claim in words (e.g. ``"held-out accuracy, PyTorch"``) and
    ``value`` the measured number. The bounds ``ge``, ``gt``, ``le``, ``lt`` (any
    combination) require ``value >= ge``, ``value > gt`` and so on; ``near`` with
    ``atol``/``rtol`` requires ``|value - near| <= atol + rtol * |near|``.

    >>> expect("held-out accuracy", 0.951, ge=0.93)
    checked: held-out accuracy = 0.951 >= 0.93
    >>> expect("loss of a uniform guess", 2.30262, near=2.302585, atol=1e-4)
    checked: loss of a uniform guess = 2.303, within 0.0001 of 2.303
    >>> expect("accuracy", 0.5, ge=0.9)
    Traceback (most recent call last):
    ...
    xentlib.notebook.ClaimError: claim no longer holds: accuracy = 0.5, required >= 0.9
    """
    bounds = [(ge, ">=", lambda v, b: v >= b), (gt, ">", lambda v, b: v > b),
              (le, "<=", lambda v, b: v <= b), (lt, "<", lambda v, b: v < b)]
    if all(b is None for b, _, _ in bounds) and near is None:
        raise TypeError("expect: give at least one of ge, gt, le, lt or near")
    v = float(value)
    parts, ok = [], v == v  # NaN never satisfies a claim
    for bound, symbol, holds in bounds:
        if bound is not None:
            parts.append(f"{symbol} {_fmt(bound)}")
            ok = ok and holds(v, float(bound))
    if near is not None:
        tol = atol + rtol * abs(float(near))
        parts.append(f"within {tol:.2g} of {_fmt(near)}")
        ok = ok and abs(v - float(near)) <= tol
    condition = ", ".join(parts)
    _log_claim(what, v, condition, ok)
    if not ok:
        raise ClaimError(f"claim no longer holds: {what} = {_fmt(v)}, required {condition}")
    print(f"checked: {what} = {_fmt(v)} {condition}".replace(" within", ", within"))


def _log_claim(what, value, condition, ok):
    """Append the claim to ``$XENTLIB_CLAIMS_LOG`` (JSON lines), for claim_spread.py."""
    path = os.environ.get("XENTLIB_CLAIMS_LOG")
    if path:
        import json
        with open(path, "a", encoding="utf8") as log:
            log.write(json.dumps({"what": what, "value": value, "condition": condition,
                                  "ok": ok}) + "\n")
