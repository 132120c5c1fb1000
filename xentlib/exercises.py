r"""Check a reader's implementation of a formula against xentlib's reference.

The exercises of the book ask the reader to write, say, their own ``entropy``.
:func:`check` runs the reader's function and ``xentlib.<backend>.<name>`` on the
same inputs — random ones and the edge cases that break naive code (a zero
probability, logits of :math:`\pm 1000`, a batch of rows, a row that is all
:math:`-\infty`-bound) — and either prints a one-line verdict or raises
``AssertionError`` naming the input, the expected and the returned value::

    >>> import numpy as np
    >>> from xentlib.exercises import check
    >>> def my_entropy(p):
    ...     p = np.asarray(p)
    ...     return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=-1)
    >>> check(my_entropy, "entropy")
    ✓ entropy: matches xentlib.numpy.entropy on 8 inputs (not tried: 3 inputs that need the keyword(s) axis, base)

A naive version fails on the first probability that is exactly zero::

    >>> def naive_entropy(p):
    ...     return -np.sum(p * np.log(p), axis=-1)
    >>> check(naive_entropy, "entropy")
    Traceback (most recent call last):
    ...
    AssertionError: entropy: wrong value on input 3 of 8 (one-hot: 0 log 0 counts as 0)
      call:     entropy(array([0., 1., 0.]))
      expected: 0.0
      got:      nan

Inputs whose keyword options (``axis=``, ``base=``, ``reduction=``, ...) the
reader's function does not accept are skipped, and the verdict says so. The
inputs are generated from a fixed seed, so the output is the same on every run.
The reader's function gets fresh copies (NumPy arrays, or tensors for
``backend="torch"``/``"tensorflow"``); floating-point warnings it triggers
are silenced, so a notebook's stored output stays clean.
"""
from __future__ import annotations

import importlib
import inspect
import warnings

import numpy as np

__all__ = ["check", "cases", "names"]

_RTOL, _ATOL = 1e-6, 1e-9


class _Case:
    __slots__ = ("args", "kwargs", "note")

    def __init__(self, args, kwargs=None, note=""):
        self.args, self.kwargs, self.note = tuple(args), dict(kwargs or {}), note


def _c(*args, note="", **kwargs):
    return _Case(args, kwargs, note)


# ---- deterministic input generators -------------------------------------------

def _rng(name):
    return np.random.default_rng(sum(map(ord, name)))


def _dist(rng, *shape):
    """Random probability vectors along the last axis (Dirichlet(1))."""
    return rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]) if len(shape) > 1 \
        else rng.dirichlet(np.ones(shape[0]))


def _logits(rng, *shape, scale=3.0):
    return rng.normal(scale=scale, size=shape)


def _onehot(labels, k):
    return np.eye(k)[np.asarray(labels)]


def _table(rng, *shape):
    t = rng.random(shape)
    return t / t.sum(axis=(-2, -1), keepdims=True)


P6 = np.array([0.6, 0.2, 0.2])
Q5 = np.array([0.5, 0.3, 0.2])


def lse_like(name):
    r = _rng(name)
    return [
        _c(_logits(r, 5), note="random logits"),
        _c(_logits(r, 4, 6), note="a batch of 4 rows"),
        _c(np.array([1000.0, 1000.0]), note="huge logits: exp overflows unless you subtract the max"),
        _c(np.array([-1000.0, -1000.0, -999.0]), note="very negative logits: exp underflows to 0"),
        _c(np.array([1000.0, 0.0, -1000.0]), note="mixed extreme logits"),
        _c(np.array([2.5]), note="a single logit"),
        _c(_logits(r, 3, 4), axis=0, note="axis=0"),
    ]


def cases_logsumexp():
    out = lse_like("logsumexp")
    out.append(_c(_logits(_rng("lse2"), 2, 3), keepdims=True, note="keepdims=True"))
    return out


def cases_sigmoid(name):
    r = _rng(name)
    return [
        _c(_logits(r, 6), note="random logits"),
        _c(np.array([0.0]), note="z = 0"),
        _c(np.array([-1000.0, -50.0, 50.0, 1000.0]), note="extreme logits: exp overflows"),
        _c(_logits(r, 3, 4), note="a 3x4 array"),
    ]


def cases_entropy():
    r = _rng("entropy")
    cols = _dist(r, 3, 4).T
    return [
        _c(_dist(r, 5), note="random distribution"),
        _c(np.full(4, 0.25), note="uniform over 4"),
        _c(np.array([0.0, 1.0, 0.0]), note="one-hot: 0 log 0 counts as 0"),
        _c(np.array([0.5, 0.5, 0.0]), note="a zero probability: 0 log 0 counts as 0"),
        _c(np.array([1.0]), note="a single outcome"),
        _c(P6, note="the seeds' P"),
        _c(_dist(r, 3, 4), note="a batch of 3 distributions"),
        _c(np.array([[0.0, 1.0], [0.5, 0.5]]), note="a batch with zeros"),
        _c(P6, base=2, note="base=2 (bits)"),
        _c(_dist(r, 2, 4), base=10, note="base=10"),
        _c(cols, axis=0, note="axis=0 (distributions in columns)"),
    ]


def cases_two(name):
    r = _rng(name)
    p, q = _dist(r, 3, 5), _dist(r, 3, 5)
    return [
        _c(P6, Q5, note="the seeds' P and Q"),
        _c(_dist(r, 4), _dist(r, 4), note="random P and Q"),
        _c(np.array([0.0, 1.0, 0.0]), np.array([0.1, 0.7, 0.2]), note="one-hot P: 0 log q counts as 0"),
        _c(np.array([0.5, 0.5, 0.0]), np.array([0.4, 0.6, 0.0]), note="p = q = 0 in one place: the term is 0"),
        _c(np.array([0.5, 0.5]), np.array([1.0, 0.0]), note="p > 0 where q = 0: +inf"),
        _c(Q5, Q5, note="P = Q"),
        _c(p, q, note="a batch of 3 pairs"),
        _c(P6, Q5, base=2, note="base=2 (bits)"),
        _c(p.T / p.T.sum(0), q.T / q.T.sum(0), axis=0, note="axis=0 (distributions in columns)"),
    ]


def cases_joint(name):
    r = _rng(name)
    return [
        _c(_table(r, 2, 3), note="a random 2x3 table p(x, y)"),
        _c(np.outer([0.3, 0.7], [0.2, 0.5, 0.3]), note="independent X and Y"),
        _c(np.array([[0.5, 0.0], [0.0, 0.5]]), note="Y = X (zeros in the table)"),
        _c(np.array([[0.5, 0.5], [0.0, 0.0]]), note="a row with p(x) = 0"),
        _c(_table(r, 2, 3, 2), note="a batch of two 3x2 tables"),
        _c(_table(r, 3, 3), base=2, note="base=2 (bits)"),
    ]


def cases_smooth_labels():
    r = _rng("smooth_labels")
    return [
        _c(np.array([0.0, 1.0, 0.0, 0.0]), 0.1, note="one-hot, epsilon = 0.1"),
        _c(_onehot([0, 2, 1], 3), 0.2, note="a batch of one-hot rows"),
        _c(np.array([1.0, 0.0]), 0.0, note="epsilon = 0: unchanged"),
        _c(np.array([1.0, 0.0, 0.0]), 1.0, note="epsilon = 1: uniform"),
        _c(_dist(r, 5), 0.3, note="soft targets"),
        _c(_onehot([0, 1], 3).T, 0.1, axis=0, note="axis=0"),
    ]


def cases_categorical():
    r = _rng("categorical_cross_entropy")
    y = _onehot([1, 0, 2, 2], 3)
    probs = _dist(r, 4, 3)
    z = _logits(r, 4, 3)
    return [
        _c(np.array([[0.0, 1.0, 0.0]]), np.array([[0.1, 0.7, 0.2]]), note="one example"),
        _c(y, probs, note="a batch of 4, one-hot targets"),
        _c(_dist(r, 4, 3), probs, note="soft targets"),
        _c(np.array([[1.0, 0.0, 0.0]]), np.array([[0.5, 0.5, 0.0]]),
           note="a zero probability on a wrong class"),
        _c(np.array([0.0, 1.0, 0.0]), np.array([0.2, 0.5, 0.3]), note="a single row without a batch axis"),
        _c(y, z, from_logits=True, note="from_logits=True"),
        _c(np.array([[1.0, 0.0]]), np.array([[1000.0, -1000.0]]), from_logits=True,
           note="extreme logits (from_logits=True)"),
        _c(y, probs, reduction="sum", note="reduction='sum'"),
        _c(y, probs, reduction="none", note="reduction='none'"),
        _c(y, z, from_logits=True, label_smoothing=0.1, note="label_smoothing=0.1"),
    ]


def cases_sparse():
    r = _rng("sparse_categorical_cross_entropy")
    labels = np.array([1, 0, 2, 2])
    probs = _dist(r, 4, 3)
    z = _logits(r, 4, 3)
    seq_labels = np.array([[1, 3, 0], [2, 0, 0]])
    seq_z = _logits(r, 2, 3, 4)
    return [
        _c(np.array([1]), np.array([[0.1, 0.7, 0.2]]), note="one example"),
        _c(labels, probs, note="a batch of 4"),
        _c(np.array([0]), np.array([[1.0, 0.0, 0.0]]), note="a perfect prediction (zeros elsewhere)"),
        _c(labels, z, from_logits=True, note="from_logits=True"),
        _c(np.array([0, 1]), np.array([[1000.0, -1000.0], [0.0, 1000.0]]), from_logits=True,
           note="extreme logits (from_logits=True)"),
        _c(seq_labels, seq_z, from_logits=True, note="(batch, time) labels, (batch, time, classes) logits"),
        _c(seq_labels, seq_z, from_logits=True, ignore_index=0, note="padding masked with ignore_index=0"),
        _c(labels, probs, reduction="none", note="reduction='none'"),
        _c(labels, probs, reduction="sum", note="reduction='sum'"),
        _c(labels, z, from_logits=True, class_weight=np.array([1.0, 2.0, 0.5]), note="class_weight"),
        _c(labels, z, from_logits=True, label_smoothing=0.1, note="label_smoothing=0.1"),
    ]


def cases_binary():
    r = _rng("binary_cross_entropy")
    y = (r.random((3, 4)) > 0.5).astype(float)
    q = r.uniform(0.05, 0.95, size=(3, 4))
    z = _logits(r, 3, 4)
    return [
        _c(np.array([1.0, 0.0]), np.array([0.9, 0.2]), note="two examples"),
        _c(y, q, note="multi-label: a 3x4 array"),
        _c(np.array([1.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.5]),
           note="predictions of exactly 0 and 1 on the right side: 0 log 0 counts as 0"),
        _c(r.random(5), r.uniform(0.05, 0.95, size=5), note="soft targets"),
        _c(y, z, from_logits=True, note="from_logits=True"),
        _c(np.array([1.0, 0.0, 1.0, 0.0]), np.array([1000.0, -1000.0, -1000.0, 1000.0]),
           from_logits=True, note="extreme logits (from_logits=True)"),
        _c(y, q, reduction="none", note="reduction='none'"),
        _c(y, q, reduction="sum", note="reduction='sum'"),
        _c(y, z, from_logits=True, pos_weight=3.0, note="pos_weight=3"),
        _c(y, z, from_logits=True, label_smoothing=0.2, note="label_smoothing=0.2"),
    ]


def cases_mse():
    r = _rng("mean_squared_error")
    a, b = r.normal(size=(3, 4)), r.normal(size=(3, 4))
    return [
        _c(np.array([1.0, 2.0]), np.array([1.5, 1.0]), note="two values"),
        _c(a, b, note="a 3x4 array"),
        _c(a, a.copy(), note="a perfect prediction"),
        _c(a, b, reduction="sum", note="reduction='sum'"),
        _c(a, b, reduction="none", note="reduction='none'"),
    ]


def cases_gaussian_nll():
    r = _rng("gaussian_nll")
    y, mu = r.normal(size=6), r.normal(size=6)
    return [
        _c(np.array([0.0]), np.array([0.0]), note="y = mean, variance 1"),
        _c(y, mu, note="random values, variance 1"),
        _c(y, mu, 2.5, note="variance 2.5"),
        _c(y, mu, r.uniform(0.5, 2.0, size=6), note="one variance per value"),
        _c(y, mu, 2.5, full=False, note="full=False"),
        _c(y, mu, 2.5, reduction="none", note="reduction='none'"),
    ]


def cases_perplexity():
    r = _rng("perplexity")
    return [
        _c(np.array([0, 1, 2]), np.zeros((3, 3)), note="a uniform model over 3 tokens"),
        _c(np.array([3, 1, 4, 1, 5]), _logits(r, 5, 7), note="random logits over 7 tokens"),
        _c(np.array([[1, 2, 0], [3, 0, 0]]), _logits(r, 2, 3, 5), note="(batch, time) tokens"),
        _c(np.array([[1, 2, 0], [3, 0, 0]]), _logits(r, 2, 3, 5), ignore_index=0,
           note="padding masked with ignore_index=0"),
        _c(np.array([0, 1]), np.array([[1000.0, -1000.0], [0.0, 1000.0]]), note="extreme logits"),
    ]


def cases_softmax_grad():
    r = _rng("softmax_cross_entropy_grad")
    return [
        _c(np.array([0.0, 1.0]), np.array([0.0, 0.0]), note="two equal logits"),
        _c(_onehot([2, 0, 1, 1], 3), _logits(r, 4, 3), note="a batch of 4, one-hot targets"),
        _c(_dist(r, 2, 5), _logits(r, 2, 5), note="soft targets"),
        _c(np.array([1.0, 0.0, 0.0]), np.array([1000.0, 0.0, -1000.0]), note="extreme logits"),
        _c(_onehot([0, 1], 2).T, _logits(r, 2, 2), axis=0, note="axis=0"),
    ]


def cases_sigmoid_grad():
    r = _rng("sigmoid_cross_entropy_grad")
    return [
        _c(np.array([1.0, 0.0]), np.array([0.0, 0.0]), note="z = 0"),
        _c((r.random((3, 4)) > 0.5).astype(float), _logits(r, 3, 4), note="a 3x4 array"),
        _c(np.array([1.0, 0.0, 1.0]), np.array([1000.0, -1000.0, -1000.0]), note="extreme logits"),
        _c(r.random(4), _logits(r, 4), note="soft targets"),
    ]


def _quadratic(center):
    center = np.asarray(center, dtype=float)

    def loss_and_grad(theta):
        d = np.asarray(theta) - center
        return float((d ** 2).sum()), 2 * d
    loss_and_grad.__name__ = f"quadratic_bowl_at_{center.tolist()}"
    return loss_and_grad


def cases_gradient_descent():
    return [
        _c(_quadratic([0.0]), np.array([3.0]), learning_rate=0.25, steps=3, note="(t - 0)^2, 3 steps"),
        _c(_quadratic([1.0, -2.0]), np.array([0.0, 0.0]), learning_rate=0.1, steps=20,
           note="a 2-D bowl, 20 steps"),
        _c(_quadratic([0.5]), np.array([0.5]), learning_rate=0.5, steps=2, note="starting at the minimum"),
        _c(_quadratic([2.0]), np.array([-1.0]), learning_rate=0.1, steps=0, note="steps=0"),
    ]


def cases_linear_cross_entropy():
    r = _rng("linear_cross_entropy")
    hidden, weight = r.normal(size=(5, 3)), r.normal(size=(7, 3))
    labels = np.array([0, 6, 2, 2, 4])
    return [
        _c(hidden, weight, labels, note="5 tokens, hidden size 3, vocabulary 7"),
        _c(hidden, weight, labels, bias=r.normal(size=7), note="with a bias"),
        _c(hidden, weight, np.array([0, -100, 2, -100, 4]), ignore_index=-100, note="two ignored tokens"),
        _c(hidden, weight, labels, label_smoothing=0.1, reduction="sum", note="smoothing, reduction='sum'"),
        _c(r.normal(size=(2, 4, 3)), weight, r.integers(0, 7, (2, 4)), reduction="none",
           note="(batch, time, hidden) input"),
    ]


def cases_focal(name):
    r = _rng(name)
    if name == "binary_focal_cross_entropy":
        y, q, z = (r.random((3, 4)) > 0.5).astype(float), r.uniform(0.05, 0.95, (3, 4)), _logits(r, 3, 4)
        extreme = (np.array([1.0, 0.0, 1.0]), np.array([100.0, -100.0, -100.0]))
        weights = 0.25
    else:
        y, q, z = _onehot([1, 0, 2, 2], 3), _dist(r, 4, 3), _logits(r, 4, 3)
        extreme = (np.array([[0.0, 1.0]]), np.array([[100.0, -100.0]]))
        weights = np.array([0.5, 1.0, 2.0])
    return [
        _c(y, q, note="probabilities, gamma = 2"),
        _c(y, z, from_logits=True, note="from_logits=True"),
        _c(*extreme, from_logits=True, note="logits of +-100: exact in log space"),
        _c(y, z, from_logits=True, gamma=0.0, note="gamma = 0: the plain cross-entropy"),
        _c(y, z, from_logits=True, alpha=weights, note="alpha"),
        _c(y, z, from_logits=True, label_smoothing=0.1, reduction="none",
           note="label_smoothing=0.1, reduction='none'"),
    ]


def cases_calibration(name):
    r = _rng(name)
    probs, labels = _dist(r, 40, 3), r.integers(0, 3, 40)
    if name == "brier_score":
        return [_c(labels, probs, note="40 items, 3 classes"),
                _c(labels, probs, reduction="none", note="reduction='none'")]
    return [_c(labels, probs, note="10 equal-width bins"),
            _c(labels, probs, n_bins=4, binning="mass", note="4 equal-mass bins")]


def cases_fit_temperature():
    r = _rng("fit_temperature")
    z = _logits(r, 60, 4) * 3
    labels = np.array([r.choice(4, p=np.exp(row / 2) / np.exp(row / 2).sum()) for row in z])
    return [_c(z, labels, note="over-confident logits: T > 1")]


def _generators():
    """Name -> case generator: the function table's, and the NumPy-only ``gradient_descent``."""
    from xentlib._docs import FUNCTIONS
    return {**{name: f.exercises for name, f in FUNCTIONS.items() if f.exercises},
            "gradient_descent": cases_gradient_descent}


def names():
    """The function names :func:`check` knows, in the order of ``xentlib.numpy.__all__``.

    >>> from xentlib.exercises import names
    >>> names()[:3]
    ['logsumexp', 'softmax', 'log_softmax']
    """
    from xentlib import numpy as ref
    generators = _generators()
    return [n for n in ref.__all__ if n in generators]


def cases(name):
    """The ``(args, kwargs, note)`` triples :func:`check` tries for ``name``.

    >>> from xentlib.exercises import cases
    >>> args, kwargs, note = cases("entropy")[2]
    >>> args[0].tolist(), kwargs, note
    ([0.0, 1.0, 0.0], {}, 'one-hot: 0 log 0 counts as 0')
    """
    generators = _generators()
    if name not in generators:
        raise ValueError(f"name must be one of {', '.join(names())}; got {name!r}")
    return [(c.args, c.kwargs, c.note) for c in generators[name]()]


# ---- backends --------------------------------------------------------------------

def _converter(backend):
    """A function turning a NumPy input into the backend's array type."""
    if backend == "numpy":
        return lambda x: x.copy() if isinstance(x, np.ndarray) else x
    if backend == "torch":
        import torch
        return lambda x: torch.from_numpy(x.copy()) if isinstance(x, np.ndarray) else x
    if backend == "tensorflow":
        import tensorflow as tf
        return lambda x: tf.constant(x) if isinstance(x, np.ndarray) else x
    raise ValueError(f"backend must be 'numpy', 'torch' or 'tensorflow'; got {backend!r}")


def _to_numpy(x):
    if isinstance(x, (tuple, list)) and not all(isinstance(v, (int, float)) for v in x):
        return tuple(_to_numpy(v) for v in x)
    if hasattr(x, "detach"):  # torch
        x = x.detach().cpu().numpy()
    elif hasattr(x, "numpy") and not isinstance(x, np.ndarray):  # tensorflow
        x = x.numpy()
    return np.asarray(x, dtype=np.float64)


def _fmt(x):
    if callable(x):
        return getattr(x, "__name__", "a function")
    if isinstance(x, np.ndarray):
        with np.printoptions(precision=6, threshold=30, suppress=True):
            return repr(x)
    if isinstance(x, tuple):
        return "(" + ", ".join(_fmt(v) for v in x) + ")"
    return repr(x)


def _fmt_value(x):
    if isinstance(x, tuple):
        return "(" + ", ".join(_fmt_value(v) for v in x) + ")"
    if x.ndim == 0:
        return repr(float(np.round(x, 6)) if np.isfinite(x) else float(x))
    with np.printoptions(precision=6, threshold=30, suppress=True):
        return np.array2string(x, separator=", ")


def _call_text(name, args, kwargs):
    parts = [_fmt(a) for a in args] + [f"{k}={_fmt(v)}" for k, v in kwargs.items()]
    return _indent(f"{name}({', '.join(parts)})")


def _indent(text):
    return text.replace("\n", "\n" + " " * 12)


def _accepted(fn):
    """The keyword names ``fn`` accepts, or None if it takes ``**kwargs`` or has no signature."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _mismatch(expected, got):
    """None if equal within tolerance, else a short reason."""
    if isinstance(expected, tuple):
        if not isinstance(got, tuple) or len(got) != len(expected):
            return f"expected a tuple of {len(expected)} results"
        for i, (e, g) in enumerate(zip(expected, got)):
            why = _mismatch(e, g)
            if why:
                return f"result [{i}]: {why}"
        return None
    if isinstance(got, tuple):
        return "expected one array, got a tuple"
    if got.shape != expected.shape:
        return f"wrong shape: expected {expected.shape}, got {got.shape}"
    if not np.allclose(got, expected, rtol=_RTOL, atol=_ATOL, equal_nan=True):
        return "wrong value"
    return None


def check(fn, name, *, backend="numpy"):
    """Test ``fn`` against ``xentlib.<backend>.<name>`` and print a one-line verdict.

    ``fn`` must take the same positional arguments as the reference (see
    ``help(xentlib.numpy.<name>)``); keyword options it does not accept are
    not tried. Raises ``AssertionError`` at the first input where ``fn``
    raises, returns a different shape, or a value off by more than a relative
    1e-6 (NaN only matches NaN, inf only inf).

    >>> import numpy as np
    >>> from xentlib.exercises import check
    >>> def my_softmax(z, axis=-1):
    ...     e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    ...     return e / e.sum(axis=axis, keepdims=True)
    >>> check(my_softmax, "softmax")
    ✓ softmax: matches xentlib.numpy.softmax on 7 inputs
    >>> check(lambda z: np.exp(z) / np.exp(z).sum(), "softmax")  # sums over the whole batch
    Traceback (most recent call last):
    ...
    AssertionError: softmax: wrong value on input 2 of 6 (a batch of 4 rows)
      call:     softmax(array([[ 2.003036,  1.57565 ,  3.307381,  1.153597, -0.008007, -0.17626 ],
    ...
    """
    if not callable(fn):
        raise TypeError(f"fn must be a function; got {type(fn).__name__}")
    generators = _generators()
    if not isinstance(name, str) or name not in generators:
        raise ValueError(f"name must be one of {', '.join(names())}; got {name!r}")
    convert = _converter(backend)
    module = importlib.import_module(f"xentlib.{backend}")
    if name not in getattr(module, "__all__", ()):
        raise ValueError(f"xentlib.{backend} has no function {name!r} to compare with")
    reference = getattr(module, name)
    accepted = _accepted(fn)

    tried, skipped_kw = [], set()
    for case in generators[name]():
        missing = set() if accepted is None else set(case.kwargs) - accepted
        if missing:
            skipped_kw |= missing
        else:
            tried.append(case)
    if not tried:
        raise AssertionError(
            f"{name}: your function accepts none of the inputs to try; "
            f"it must take the same positional arguments as xentlib.{backend}.{name}")

    for i, case in enumerate(tried, 1):
        where = f"input {i} of {len(tried)}" + (f" ({case.note})" if case.note else "")
        call = _call_text(name, case.args, case.kwargs)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            expected = _to_numpy(reference(*map(convert, case.args),
                                           **{k: convert(v) for k, v in case.kwargs.items()}))
            try:
                got = fn(*map(convert, case.args), **{k: convert(v) for k, v in case.kwargs.items()})
            except Exception as exc:  # the reader's bug, reported with its input
                raise AssertionError(
                    f"{name}: raised {type(exc).__name__} on {where}\n"
                    f"  call:     {call}\n  error:    {exc}") from exc
            try:
                got = _to_numpy(got)
            except (TypeError, ValueError):
                raise AssertionError(
                    f"{name}: returned {type(got).__name__}, not numbers, on {where}\n"
                    f"  call:     {call}") from None
        why = _mismatch(expected, got)
        if why:
            raise AssertionError(
                f"{name}: {why} on {where}\n"
                f"  call:     {call}\n"
                f"  expected: {_indent(_fmt_value(expected))}\n"
                f"  got:      {_indent(_fmt_value(got))}")

    line = f"✓ {name}: matches xentlib.{backend}.{name} on {len(tried)} inputs"
    if skipped_kw:
        n = sum(1 for c in generators[name]()) - len(tried)
        line += (f" (not tried: {n} input{'s' if n != 1 else ''} that need the keyword(s) "
                 f"{', '.join(sorted(skipped_kw))})")
    print(line)
