"""The inputs of the function table (:data:`xentlib._docs.FUNCTIONS`): what the tests feed every backend.

The builders take a NumPy random generator (the parity tests seed it from the case
id); the constants are the small valid arguments that the error tests spoil one at
a time.
"""
from __future__ import annotations

import numpy as np

# Small valid arguments: distributions, logits, one-hot targets, labels, binary targets.
P = np.array([0.6, 0.2, 0.2])
Q = np.array([0.5, 0.3, 0.2])
Z = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
Y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
PY = np.array([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]])
L = np.array([1, 0])
B = np.array([1.0, 0.0, 1.0])
PB = np.array([0.9, 0.2, 0.6])
W3 = np.array([1.0, 2.0, 0.5])
JOINT = np.array([[0.25, 0.25], [0.25, 0.25]])


def dist(rng, shape, *, zeros=False):
    """Rows summing to 1 along the last axis; optionally with exact zeros."""
    p = rng.random(shape) + 0.05
    if zeros:
        p = np.where(rng.random(shape) < 0.3, 0.0, p)
        p[..., 0] += 0.1  # at least one non-zero per row
    return p / p.sum(axis=-1, keepdims=True)


def logits(rng, *shape):
    return rng.normal(0, 3, shape)


def labels(rng, num_classes, *shape):
    return rng.integers(0, num_classes, shape)


def padded_labels(rng, num_classes, *shape):
    """Labels whose last two positions of every sequence are padding (-100)."""
    y = labels(rng, num_classes, *shape)
    y[..., -2:] = -100
    return y


def onehot(rng, num_classes, n):
    return np.eye(num_classes)[rng.integers(0, num_classes, n)]


def joint(rng, *shape):
    """Tables p(x, y) over the last two axes, with one exact zero each."""
    p = rng.random(shape)
    p[..., 0, 1] = 0.0
    return p / p.sum(axis=(-2, -1), keepdims=True)


def binary_targets(rng, *shape):
    return (rng.random(shape) < 0.4).astype(float)
