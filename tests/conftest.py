"""Shared fixtures: every cross-backend test runs once per backend.

A test receives a :class:`Backend`, builds its inputs as NumPy arrays, converts
them with ``backend.asarray`` (dtype preserved) and reads results back with
``backend.numpy``, so one test body checks NumPy, PyTorch and TensorFlow alike.
"""
from __future__ import annotations

import importlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

BACKENDS = ("numpy", "torch", "tensorflow")


class Backend:
    def __init__(self, name: str):
        self.name = name
        self.xl = importlib.import_module(f"xentlib.{name}")

    def __repr__(self):
        return self.name

    def asarray(self, a, dtype=None):
        """A backend tensor holding ``a`` with the same dtype (or ``dtype``)."""
        a = np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype)
        if self.name == "numpy":
            return a
        if self.name == "torch":
            import torch
            return torch.from_numpy(np.array(a, order="C", copy=True))  # ascontiguousarray makes 0-d 1-d
        import tensorflow as tf
        return tf.convert_to_tensor(a)

    def numpy(self, t):
        if self.name == "numpy":
            return np.asarray(t)
        if self.name == "torch":
            import torch
            t = t.detach()
            return (t.float() if t.dtype == torch.bfloat16 else t).numpy()
        import tensorflow as tf
        if t.dtype == tf.bfloat16:
            t = tf.cast(t, tf.float32)
        return t.numpy()

    def call(self, name, *arrays, **kwargs):
        """Call ``xl.<name>`` with NumPy arrays converted; return a NumPy array."""
        fn = getattr(self.xl, name)
        return self.numpy(fn(*(self.asarray(a) for a in arrays), **kwargs))


@pytest.fixture(params=BACKENDS, scope="session")
def backend(request) -> Backend:
    return Backend(request.param)


@pytest.fixture(params=BACKENDS[1:], scope="session")
def framework(request) -> Backend:
    """Only the autograd backends (PyTorch, TensorFlow)."""
    return Backend(request.param)


@pytest.fixture(scope="session")
def reference() -> Backend:
    return Backend("numpy")


def random_distribution(rng, shape, *, zeros=False, dtype=np.float64):
    """Rows summing to 1 along the last axis; optionally with exact zeros."""
    p = rng.random(shape) + 0.05
    if zeros:
        p = np.where(rng.random(shape) < 0.3, 0.0, p)
        p[..., 0] += 0.1  # at least one non-zero per row
    return (p / p.sum(axis=-1, keepdims=True)).astype(dtype)


def pytest_collection_modifyitems(items):
    """The fuzz properties' files first: with ``CI=true`` each takes 1 to 5 CPU minutes (at
    the ci profile's 1,000 examples per property), more than any other file, so ``make test``
    (``--dist loadfile --no-loadscope-reorder``) starts them at once and the short files fill the
    workers in after them, rather than leaving one worker alone on a fuzz file at the end (xdist's
    default order puts the files with the fewest tests, the fuzz files, last)."""
    items.sort(key=lambda item: not item.path.name.startswith("test_fuzz"))
