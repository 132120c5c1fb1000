"""One call at the top of every chapter: quiet, seeded, reproducible notebooks.

``setup()`` must run before TensorFlow is imported anywhere in the kernel:
TensorFlow reads ``TF_CPP_MIN_LOG_LEVEL`` once, at import, and its C++ log
lines (timestamps, PIDs) would otherwise land in the stored outputs, where
nbval would see them differ on every run.
"""
from __future__ import annotations

import logging
import os
import random
import warnings


def setup(seed: int = 0):
    """Silence framework noise, fix every seed, use one thread, set print/plot defaults.

    Imports NumPy, TensorFlow and PyTorch (in that order, after the logging
    switches) and returns nothing; call :func:`seed_all` again before each
    training run that must be reproducible on its own.
    """
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ.setdefault("PYTHONHASHSEED", str(seed))  # for subprocesses; this kernel's is fixed at start
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"  # bit-identical CPU results across runs
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
    seed_all(seed)


def seed_all(seed: int = 0):
    """Seed Python, NumPy, PyTorch and TensorFlow/Keras in one call."""
    random.seed(seed)
    import numpy as np
    np.random.seed(seed)
    import torch
    torch.manual_seed(seed)
    import keras
    keras.utils.set_random_seed(seed)
