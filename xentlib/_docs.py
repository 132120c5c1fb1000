r"""The function table: every public function of the three backends, written once.

One :class:`Function` record per function carries its reference text and
shared doctest (what :func:`shared` puts in each backend's docstring), the
inputs on which the parity tests compare the backends with the NumPy reference,
the valid calls and bad arguments of the error tests, and the cases of
:func:`xentlib.exercises.check`. ``__all__`` of every backend is the table's
names (:func:`public_names`) plus that backend's :data:`EXTRAS`; the API, parity,
error and exercise tests read the table. A new function is one record here and
its formula in each backend. The conventions common to all are stated in
:mod:`xentlib.numpy`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from xentlib import exercises as ex
from xentlib._inputs import (
    JOINT,
    PB,
    PY,
    W3,
    B,
    L,
    P,
    Q,
    Y,
    Z,
    binary_targets,
    dist,
    joint,
    labels,
    logits,
    onehot,
    padded_labels,
)

REDUCTIONS = ("mean", "sum", "none")


def _binned(fn):
    """The calibration metrics' parity rows: 50 items of 3 classes in 5 bins, of either binning."""
    return tuple((f"{fn}-{binning}", lambda r: (labels(r, 3, 50), dist(r, (50, 3))), dict(n_bins=5, binning=binning))
                 for binning in ("width", "mass"))


class Function(NamedTuple):
    """One function of every backend.

    ``parity`` rows are ``(case id, inputs, options)``: ``inputs(rng)`` returns the
    positional arrays, then optionally a dict of array keyword arguments (the
    random generator is seeded from the case id). ``calls`` are valid calls,
    ``([(argument, array), ...], keywords)``; each ``bad`` row,
    ``({argument: bad value}, error type, message regex)``, changes the first call
    and expects that error, its message starting with the argument's name.
    """

    doc: str | None = None  # the reference text (None: the function documents itself)
    example: str | None = None  # a doctest that reads the same in every backend
    parity: tuple = ()
    calls: tuple = ()
    bad: tuple = ()
    exercises: Callable | None = None  # () -> the cases of xentlib.exercises.check
    tested_in: str | None = None  # a function with a test suite of its own (no parity/error rows)
    # The float arguments that must hold probabilities in [0, 1]; None: those named p, q, p_xy, y,
    # y_true, probs, and y_pred unless from_logits.
    probabilities: tuple | None = None


FUNCTIONS = {
    "logsumexp": Function(
        doc=r"""
Log-sum-exp, computed without overflow.

.. math:: \operatorname{LSE}(z) = m + \log \sum_i e^{z_i - m}, \qquad m = \max_i z_i

Subtracting the maximum keeps every exponent :math:`\le 0`, so nothing
overflows; the largest term is exactly 1, so nothing underflows to
:math:`\log 0`. Matches ``scipy.special.logsumexp`` and ``torch.logsumexp``
(note SciPy's default is over *all* axes; here it is the last one).
""",
        example="""
>>> float(xl.logsumexp([1000.0, 1000.0]))   # naive: log(inf) = inf
1000.6931471805599
""",
        parity=(
            ("logsumexp", lambda r: (logits(r, 4, 7),), {}),
            ("logsumexp-axis0-keepdims", lambda r: (logits(r, 4, 7),), dict(axis=0, keepdims=True)),
        ),
        calls=(([("x", Z)], {}),),
        bad=(
            ({"x": np.array([np.nan, 0.0])}, ValueError, "x contains NaN"),
            ({"x": np.array([1, 2])}, TypeError, "x must have a floating-point dtype"),
        ),
        probabilities=(),
        exercises=ex.cases_logsumexp,
    ),
    "softmax": Function(
        doc=r"""
Softmax: turns logits into a probability distribution.

.. math:: \operatorname{softmax}(z)_i = \frac{e^{z_i}}{\sum_j e^{z_j}} = e^{z_i - \operatorname{LSE}(z)}

Invariant to adding a constant to every logit.
""",
        example="""
>>> [round(float(v), 4) for v in xl.softmax([1.0, 2.0, 3.0])]
[0.09, 0.2447, 0.6652]
""",
        parity=(
            ("softmax", lambda r: (logits(r, 3, 5),), {}),
            ("softmax-axis0", lambda r: (logits(r, 3, 5),), dict(axis=0)),
        ),
        calls=(([("x", Z)], {}),),
        bad=(({"x": np.array([np.nan, 0.0])}, ValueError, "x contains NaN"),),
        probabilities=(),
        exercises=lambda: ex.lse_like("softmax"),
    ),
    "log_softmax": Function(
        doc=r"""
Log-softmax, the log-probabilities of a categorical distribution.

.. math:: \log \operatorname{softmax}(z)_i = z_i - \operatorname{LSE}(z)
          = (z_i - m) - \log \sum_j e^{z_j - m}

The second form (as SciPy and PyTorch compute it) avoids cancellation
between two large numbers for the dominant class. Finite for every finite
input, unlike ``log(softmax(z))``, whose small probabilities underflow to 0
and give :math:`-\infty`.
""",
        example="""
>>> [float(v) for v in xl.log_softmax([0.0, 1000.0])]
[-1000.0, 0.0]
""",
        parity=(
            ("log_softmax", lambda r: (logits(r, 2, 3, 6),), {}),
            ("log_softmax-axis1", lambda r: (logits(r, 2, 3, 6),), dict(axis=1)),
        ),
        calls=(([("x", Z)], {}),),
        probabilities=(),
        exercises=lambda: ex.lse_like("log_softmax"),
    ),
    "sigmoid": Function(
        doc=r"""
Logistic sigmoid, computed without overflow.

.. math:: \sigma(z) = \frac{1}{1 + e^{-z}} = e^{-\operatorname{softplus}(-z)},
   \qquad \operatorname{softplus}(t) = \log(1 + e^{t})
""",
        example="""
>>> [float(v) for v in xl.sigmoid([-1000.0, 0.0, 1000.0])]
[0.0, 0.5, 1.0]
""",
        parity=(("sigmoid", lambda r: (logits(r, 20),), {}),),
        calls=(([("x", Z)], {}),),
        probabilities=(),
        exercises=lambda: ex.cases_sigmoid("sigmoid"),
    ),
    "log_sigmoid": Function(
        doc=r"""
Log of the sigmoid, stable for any input.

.. math:: \log \sigma(z) = -\operatorname{softplus}(-z) = -\log(1 + e^{-z})
""",
        example="""
>>> [round(float(v), 6) for v in xl.log_sigmoid([-1000.0, 0.0])]
[-1000.0, -0.693147]
""",
        parity=(("log_sigmoid", lambda r: (logits(r, 4, 5),), {}),),
        calls=(([("x", Z)], {}),),
        probabilities=(),
        exercises=lambda: ex.cases_sigmoid("log_sigmoid"),
    ),
    "entropy": Function(
        doc=r"""
Shannon entropy of the distribution(s) ``p`` along ``axis``.

.. math:: H(P) = -\sum_i p_i \log p_i, \qquad 0 \log 0 = 0

Matches ``scipy.stats.entropy(p, base=base, axis=axis)`` (which also
normalises ``p``; here ``p`` must already sum to 1).
""",
        example="""
>>> float(xl.entropy([0.5, 0.5], base=2))
1.0
""",
        parity=(
            ("entropy", lambda r: (dist(r, (4, 6), zeros=True),), {}),
            ("entropy-bits", lambda r: (dist(r, (4, 6)),), dict(base=2)),
            ("entropy-axis0", lambda r: (dist(r, (6, 4)).T.copy(),), dict(axis=0, base=10)),
        ),
        calls=(([("p", P)], {}),),
        bad=(
            ({"p": np.array([1.2, -0.2])}, ValueError, "p must hold probabilities"),
            ({"p": np.array([0.5, 0.6])}, ValueError, "p must sum to 1"),
            ({"base": 1}, ValueError, "base must be positive, finite and not 1"),
            ({"base": "bits"}, TypeError, "base must be"),
            ({"axis": 3}, ValueError, "axis=3 is out of range"),
            ({"p": np.array([np.nan, 1.0])}, ValueError, "p contains NaN"),
            ({"p": np.array([1, 0])}, TypeError, "p must have a floating-point dtype"),
        ),
        exercises=ex.cases_entropy,
    ),
    "cross_entropy": Function(
        doc=r"""
Cross-entropy of ``q`` relative to the true distribution ``p``.

.. math:: H(P, Q) = -\sum_i p_i \log q_i = H(P) + D_{\mathrm{KL}}(P \,\|\, Q)

:math:`+\infty` where some :math:`p_i > 0` has :math:`q_i = 0`.
""",
        example="""
>>> round(float(xl.cross_entropy([0.6, 0.2, 0.2], [0.5, 0.3, 0.2])), 6)
0.97857
""",
        parity=(
            ("cross_entropy", lambda r: (dist(r, (5, 4), zeros=True), dist(r, (5, 4))), {}),
            ("cross_entropy-bits", lambda r: (dist(r, (3,)), dist(r, (3,))), dict(base=2)),
        ),
        calls=(([("p", P), ("q", Q)], {}),),
        bad=(
            ({"q": Q[:2]}, ValueError, r"p has shape \(3,\) but q has shape \(2,\)"),
            ({"q": np.array([0.5, 0.5, 0.5])}, ValueError, "q must sum to 1"),
            ({"q": np.array([np.nan, 0.5, 0.5])}, ValueError, "q contains NaN"),
        ),
        exercises=lambda: ex.cases_two("cross_entropy"),
    ),
    "kl_divergence": Function(
        doc=r"""
Kullback–Leibler divergence of ``q`` from ``p`` (argument order as SciPy's).

.. math:: D_{\mathrm{KL}}(P \,\|\, Q) = \sum_i p_i \log \frac{p_i}{q_i} \;\ge\; 0

Zero only when :math:`P = Q`; not symmetric. Matches
``scipy.special.rel_entr(p, q).sum(axis)``; for a batch of rows its mean
equals ``torch.nn.functional.kl_div(q.log(), p, reduction='batchmean')``
(note PyTorch's reversed argument order and log-input).
""",
        example="""
>>> round(float(xl.kl_divergence([0.6, 0.2, 0.2], [0.5, 0.3, 0.2])), 6)
0.0283
""",
        parity=(
            ("kl_divergence", lambda r: (dist(r, (5, 4), zeros=True), dist(r, (5, 4))), {}),
            ("kl_divergence-bits", lambda r: (dist(r, (2, 8)), dist(r, (2, 8))), dict(base=2)),
        ),
        calls=(([("p", P), ("q", Q)], {}),),
        bad=(({"q": np.tile(Q, (2, 1))}, ValueError, "p has shape"),),
        exercises=lambda: ex.cases_two("kl_divergence"),
    ),
    "joint_entropy": Function(
        doc=r"""
Joint entropy of a table :math:`p(x, y)`, X along axis -2, Y along axis -1.

.. math:: H(X, Y) = -\sum_{x, y} p(x, y) \log p(x, y)
""",
        example="""
>>> float(xl.joint_entropy([[0.25, 0.25], [0.25, 0.25]], base=2))
2.0
""",
        parity=(
            ("joint_entropy", lambda r: (joint(r, 3, 4),), {}),
            ("joint_entropy-batch", lambda r: (joint(r, 2, 3, 4),), dict(base=2)),
        ),
        calls=(([("p_xy", JOINT)], {}),),
        bad=(({"p_xy": JOINT * 2}, ValueError, "p_xy must"),),
        exercises=lambda: ex.cases_joint("joint_entropy"),
    ),
    "conditional_entropy": Function(
        doc=r"""
Conditional entropy :math:`H(Y \mid X)`; X along axis -2, Y along axis -1.

.. math:: H(Y \mid X) = -\sum_{x, y} p(x, y) \log \frac{p(x, y)}{p(x)} = H(X, Y) - H(X)
""",
        example="""
>>> float(xl.conditional_entropy([[0.5, 0.0], [0.0, 0.5]]))   # Y = X: no doubt left
0.0
""",
        parity=(
            ("conditional_entropy", lambda r: (joint(r, 3, 4),), {}),
            ("conditional_entropy-batch", lambda r: (joint(r, 2, 4, 3),), dict(base=2)),
        ),
        calls=(([("p_xy", JOINT)], {}),),
        exercises=lambda: ex.cases_joint("conditional_entropy"),
    ),
    "mutual_information": Function(
        doc=r"""
Mutual information of X (axis -2) and Y (axis -1).

.. math:: I(X; Y) = \sum_{x, y} p(x, y) \log \frac{p(x, y)}{p(x)\,p(y)}
          = D_{\mathrm{KL}}\big(p(x, y) \,\|\, p(x)\,p(y)\big) = H(Y) - H(Y \mid X)

Round-off can leave :math:`-10^{-17}` for independent variables; the result
is clipped at 0, its true lower bound.
""",
        example="""
>>> float(xl.mutual_information([[0.5, 0.0], [0.0, 0.5]], base=2))   # one shared bit
1.0
""",
        parity=(
            ("mutual_information", lambda r: (joint(r, 3, 4),), {}),
            ("mutual_information-batch", lambda r: (joint(r, 2, 3, 3),), dict(base=2)),
        ),
        calls=(([("p_xy", JOINT)], {}),),
        bad=(({"p_xy": np.array([0.5, 0.5])}, ValueError, "p_xy must have at least 2 dimensions"),),
        exercises=lambda: ex.cases_joint("mutual_information"),
    ),
    "smooth_labels": Function(
        doc=r"""
Standard label smoothing: mix the target with the uniform distribution.

.. math:: \tilde y = (1 - \varepsilon)\, y + \frac{\varepsilon}{K}

with :math:`K` the number of classes along ``axis``. This is what PyTorch's
``cross_entropy(label_smoothing=ε)``, Keras' categorical losses and optax's
``smooth_labels`` use. The seeds' additive smoothing :math:`(P + \epsilon)/Z`
(with :math:`Z = 1 + K\epsilon`) is the same operation with
:math:`\varepsilon = K\epsilon / (1 + K\epsilon)`.
""",
        example="""
>>> [float(v) for v in xl.smooth_labels([0.0, 1.0, 0.0, 0.0], 0.1)]
[0.025, 0.925, 0.025, 0.025]
""",
        parity=(
            ("smooth_labels", lambda r: (onehot(r, 5, 4),), dict(epsilon=0.1)),
            ("smooth_labels-axis0", lambda r: (onehot(r, 5, 4).T.copy(),), dict(epsilon=0.3, axis=0)),
        ),
        calls=(([("y", Y)], {"epsilon": 0.1}),),
        bad=(
            ({"y": np.array([0.0, 0.5, 0.0])}, ValueError, "y must sum to 1"),
            ({"epsilon": 2.0}, ValueError, "epsilon must be in"),
        ),
        exercises=ex.cases_smooth_labels,
    ),
    "categorical_cross_entropy": Function(
        doc=r"""
Categorical cross-entropy (log loss) for one-hot or probability targets.

.. math:: \ell_n = -\sum_{c=1}^{C} \tilde y_{n,c} \log \hat y_{n,c},
   \qquad \hat y = \operatorname{softmax}(z) \text{ if from\_logits}

with :math:`\tilde y` the targets after :func:`smooth_labels`. ``'mean'``
divides by the number of rows (every position but the class axis), as
PyTorch and Keras do. Unlike Keras, probabilities are neither renormalised
nor clipped: rows must sum to 1, and :math:`\hat y_c = 0` with
:math:`\tilde y_c > 0` gives :math:`+\infty`.
""",
        example="""
>>> round(float(xl.categorical_cross_entropy([[0.0, 1.0, 0.0]], [[0.1, 0.7, 0.2]])), 6)
0.356675
""",
        parity=(
            *[
                (f"cce-probs-{red}", lambda r: (onehot(r, 5, 6), dist(r, (6, 5))), dict(reduction=red))
                for red in REDUCTIONS
            ],
            *[
                (
                    f"cce-logits-smooth-{red}",
                    lambda r: (dist(r, (6, 5)), logits(r, 6, 5)),
                    dict(from_logits=True, label_smoothing=0.2, reduction=red),
                )
                for red in REDUCTIONS
            ],
            ("cce-axis0", lambda r: (onehot(r, 4, 6).T.copy(), logits(r, 4, 6)), dict(from_logits=True, axis=0)),
            ("cce-probs-zeros", lambda r: (onehot(r, 4, 6), dist(r, (6, 4), zeros=True)), dict(reduction="none")),
        ),
        calls=(
            ([("y_true", Y), ("y_pred", Z)], {"from_logits": True}),
            ([("y_true", Y), ("y_pred", PY)], {}),
        ),
        bad=(
            ({"y_pred": Z[:, :2]}, ValueError, "y_true has shape"),
            (
                {"y_pred": np.array([[0.2, 0.2, 0.2], [0.5, 0.5, 0.0]]), "from_logits": False},
                ValueError,
                "y_pred must sum to 1",
            ),
            ({"y_true": np.array([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])}, ValueError, "y_true must"),
            ({"reduction": "avg"}, ValueError, "reduction must"),
            ({"label_smoothing": 1.5}, ValueError, r"label_smoothing must be in \[0, 1\]"),
            ({"from_logits": "yes"}, TypeError, "from_logits must be True or False"),
            ({"y_pred": np.array([[np.nan, 0.0, 1.0], [0.0, 0.0, 0.0]])}, ValueError, "y_pred must be finite"),
            ({"y_true": Y.astype(np.int64)}, TypeError, "y_true must have a floating-point dtype"),
        ),
        exercises=ex.cases_categorical,
    ),
    "sparse_categorical_cross_entropy": Function(
        doc=r"""
Cross-entropy with integer class labels; any leading shape, e.g. (batch, time).

.. math:: \ell_n = w_{y_n}\Big[(1-\varepsilon)\big(-\log \hat y_{n, y_n}\big)\Big]
          + \frac{\varepsilon}{C} \sum_{c=1}^{C} w_c \big(-\log \hat y_{n,c}\big),
   \qquad L_{\text{mean}} = \frac{\sum_{n \in \mathcal K} \ell_n}{\sum_{n \in \mathcal K} w_{y_n}}

where :math:`\mathcal K` are the items whose label is not ``ignore_index``
and :math:`w = 1` without ``class_weight``. This is exactly PyTorch's
``F.cross_entropy(z, y, weight=w, ignore_index=i, label_smoothing=ε)``
(with the class axis last here, on axis 1 there), except that a ``'mean'``
over no kept item is 0 here and NaN there. Ignored items give 0
under ``'none'``. Used on (batch, time, vocab) logits it is the token-level
sequence loss, padding masked with ``ignore_index``. With ``class_weight``,
float32 item losses are weighted and summed in float64 and the result cast
back, so a weighted mean is finite wherever it is representable (a weighted
item beyond float32's maximum is ``inf`` under ``'none'``).
""",
        example="""
>>> z = [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]]
>>> round(float(xl.sparse_categorical_cross_entropy([0, 2], z, from_logits=True)), 6)
0.175456
""",
        parity=(
            *[
                (
                    f"scce-logits-{red}",
                    lambda r: (labels(r, 7, 8), logits(r, 8, 7)),
                    dict(from_logits=True, reduction=red),
                )
                for red in REDUCTIONS
            ],
            *[
                (
                    f"scce-all-options-{red}",
                    lambda r: (padded_labels(r, 6, 3, 5), logits(r, 3, 5, 6), {"class_weight": r.random(6) + 0.5}),
                    dict(from_logits=True, ignore_index=-100, label_smoothing=0.1, reduction=red),
                )
                for red in REDUCTIONS
            ],
            ("scce-probs-smooth", lambda r: (labels(r, 4, 6), dist(r, (6, 4))), dict(label_smoothing=0.05)),
            ("scce-axis1-NCT", lambda r: (labels(r, 5, 2, 7), logits(r, 2, 5, 7)), dict(from_logits=True, axis=1)),
            (
                "scce-weight-only",
                lambda r: (labels(r, 4, 9), logits(r, 9, 4), {"class_weight": r.random(4) + 0.1}),
                dict(from_logits=True),
            ),
            (
                "scce-probs-zero-weight-zero-prob",
                lambda r: (
                    np.array([0, 1]),
                    np.array([[0.5, 0.5, 0.0], [0.2, 0.8, 0.0]]),
                    {"class_weight": np.array([1.0, 2.0, 0.0])},
                ),
                dict(label_smoothing=0.1, reduction="none"),
            ),
            (
                "scce-probs-all-options",
                lambda r: (padded_labels(r, 5, 3, 4), dist(r, (3, 4, 5)), {"class_weight": r.random(5) + 0.5}),
                dict(ignore_index=-100, label_smoothing=0.1, reduction="none"),
            ),
            (
                "scce-ignore-0",
                lambda r: (labels(r, 4, 9), logits(r, 9, 4)),
                dict(from_logits=True, ignore_index=0, reduction="none"),
            ),
        ),
        calls=(
            ([("labels", L), ("y_pred", Z)], {"class_weight": W3, "from_logits": True, "label_smoothing": 0.1}),
            ([("labels", L), ("y_pred", PY)], {"class_weight": W3}),
        ),
        bad=(
            ({"labels": np.array([1, 0, 2])}, ValueError, r"labels has shape \(3,\); expected \(2,\)"),
            ({"labels": np.array([3, 0])}, ValueError, r"labels must lie in \[0, 3\)"),
            (
                {"labels": np.array([-1, 0]), "ignore_index": -100},
                ValueError,
                r"labels must lie in \[0, 3\) or equal ignore_index=-100",
            ),
            ({"reduction": None}, ValueError, "reduction must"),
            ({"label_smoothing": -0.1}, ValueError, "label_smoothing must be in"),
            ({"ignore_index": 1.5}, TypeError, "ignore_index must be an int"),
            ({"class_weight": np.ones(2)}, ValueError, r"class_weight must have shape \(3,\)"),
            ({"class_weight": np.array([1.0, -1, 1])}, ValueError, "class_weight must be non-negative"),
            ({"y_pred": np.array([[np.inf, 0.0, 1.0], [0.0, 0.0, 0.0]])}, ValueError, "y_pred must be finite"),
            ({"labels": L.astype(np.float64)}, TypeError, "labels must hold integer class indices"),
        ),
        exercises=ex.cases_sparse,
    ),
    "binary_cross_entropy": Function(
        doc=r"""
Binary and multi-label cross-entropy, one independent Bernoulli per element.

.. math:: \ell = -\big[\,w_+\, \tilde y \log \hat y + (1 - \tilde y) \log (1 - \hat y)\,\big],
   \qquad \tilde y = y (1 - \varepsilon) + \tfrac{\varepsilon}{2},
   \qquad \hat y = \sigma(z) \text{ if from\_logits}

Smoothing moves every target towards 1/2, as Keras' binary losses do
(PyTorch's BCE has no smoothing). ``pos_weight`` (:math:`w_+`, a scalar or
one value per class on the last axis) multiplies the positive term, as in
PyTorch's ``binary_cross_entropy_with_logits(pos_weight=...)`` and
``tf.nn.weighted_cross_entropy_with_logits``. ``'mean'`` averages over all
elements (a mean of finite float32 losses stays finite: the sum is redone in
float64 where float32 overflows). With logits,
:math:`\log\sigma(z) = -\operatorname{softplus}(-z)` and
:math:`\log(1-\sigma(z)) = -\operatorname{softplus}(z)` stay finite. Each
element's loss is computed in the input's float type (float32 for 16-bit
inputs), as the frameworks' kernels do: one beyond its maximum (float32:
:math:`w_+ |z| > 3.4 \cdot 10^{38}`) is ``inf``, never NaN.
""",
        example="""
>>> round(float(xl.binary_cross_entropy([1.0, 0.0], [0.9, 0.2])), 6)
0.164252
""",
        parity=(
            *[
                (
                    f"bce-probs-{red}",
                    lambda r: (binary_targets(r, 5, 3), r.uniform(0.01, 0.99, (5, 3))),
                    dict(reduction=red),
                )
                for red in REDUCTIONS
            ],
            *[
                (
                    f"bce-logits-all-options-{red}",
                    lambda r: (binary_targets(r, 5, 3), logits(r, 5, 3)),
                    dict(from_logits=True, label_smoothing=0.1, pos_weight=np.array([0.5, 2.0, 3.0]), reduction=red),
                )
                for red in REDUCTIONS
            ],
            (
                "bce-scalar-pos-weight",
                lambda r: (binary_targets(r, 8), logits(r, 8)),
                dict(from_logits=True, pos_weight=np.array(3.0)),
            ),
            (
                "bce-probs-smooth",
                lambda r: (r.random((3, 4)), r.uniform(0.01, 0.99, (3, 4))),
                dict(label_smoothing=0.2, reduction="none"),
            ),
            (
                "bce-probs-pos-weight-smooth",
                lambda r: (binary_targets(r, 4, 3), r.uniform(0.01, 0.99, (4, 3))),
                dict(pos_weight=np.array([0.5, 2.0, 3.0]), label_smoothing=0.1),
            ),
        ),
        calls=(
            ([("y_true", B), ("y_pred", PB)], {"pos_weight": np.array(2.0)}),
            ([("y_true", B), ("y_pred", Z[0])], {"pos_weight": W3, "from_logits": True}),
        ),
        bad=(
            ({"y_pred": PB[:2]}, ValueError, "y_true has shape"),
            ({"y_pred": np.array([0.9, 1.5, 0.2])}, ValueError, "y_pred must hold probabilities"),
            ({"y_true": np.array([1.0, -0.5, 0.0])}, ValueError, "y_true must hold probabilities"),
            ({"reduction": "batchmean"}, ValueError, "reduction must"),
            ({"label_smoothing": float("nan")}, ValueError, "label_smoothing must be in"),
            ({"pos_weight": np.array([-1.0])}, ValueError, "pos_weight must"),
            ({"pos_weight": np.ones(2)}, ValueError, "pos_weight must be a scalar"),
            ({"y_pred": np.array([0.0, np.nan, 1.0]), "from_logits": True}, ValueError, "y_pred must be finite"),
            ({"y_true": np.array([np.nan, 0.0, 1.0])}, ValueError, "y_true contains NaN"),
            ({"y_pred": np.array([1, 0, 1])}, TypeError, "y_pred must have a floating-point dtype"),
        ),
        exercises=ex.cases_binary,
    ),
    "mean_squared_error": Function(
        doc=r"""
Mean squared error, the regression loss of the seeds.

.. math:: \mathrm{MSE} = \frac{1}{N} \sum_{i=1}^{N} (y_i - \hat y_i)^2

``'none'`` returns the squared error of every element (as PyTorch's
``mse_loss``; Keras' ``MeanSquaredError`` averages the last axis first).
``'mean'`` divides by the number of elements. It equals
:math:`2\sigma^2` times :func:`gaussian_nll` minus a constant; see there.
""",
        example="""
>>> float(xl.mean_squared_error([1.0, 2.0], [1.5, 1.0]))
0.625
""",
        parity=(
            *[
                (f"mse-{red}", lambda r: (r.normal(size=(4, 3)), r.normal(size=(4, 3))), dict(reduction=red))
                for red in REDUCTIONS
            ],
        ),
        calls=(([("y_true", B), ("y_pred", PB)], {}),),
        bad=(
            ({"y_pred": PB[:2]}, ValueError, "y_true has shape"),
            ({"reduction": "MEAN"}, ValueError, "reduction must"),
            ({"y_true": np.array([np.nan, 0.0, 1.0])}, ValueError, "y_true contains NaN"),
            ({"y_pred": np.array([np.inf, 0.0, 1.0])}, ValueError, r"y_pred contains \+-inf"),
        ),
        probabilities=(),
        exercises=ex.cases_mse,
    ),
    "gaussian_nll": Function(
        doc=r"""
Negative log-likelihood of ``y_true`` under :math:`\mathcal N(\text{mean}, \text{variance})`.

.. math:: -\log \mathcal N(y \mid \mu, \sigma^2) = \frac{(y - \mu)^2}{2\sigma^2}
          + \frac{1}{2}\log \sigma^2 + \frac{1}{2}\log 2\pi

``full=False`` drops the constant :math:`\tfrac12 \log 2\pi` (PyTorch's
``gaussian_nll_loss`` default). With a fixed variance the NLL is an affine
function of the squared error, so minimising MSE *is* maximum likelihood
under Gaussian noise: :math:`\mathrm{MSE} = 2\sigma^2 (\mathrm{NLL} - \tfrac12\log 2\pi\sigma^2)`.
``variance`` is a positive scalar or an array broadcastable to ``y_true``.
""",
        example="""
>>> round(float(xl.gaussian_nll([0.0], [0.0])), 6)   # -log of N(0; 0, 1) = log sqrt(2 pi)
0.918939
""",
        parity=(
            *[
                (
                    f"gaussian_nll-{red}",
                    lambda r: (r.normal(size=(4, 3)), r.normal(size=(4, 3))),
                    dict(variance=2.5, reduction=red),
                )
                for red in REDUCTIONS
            ],
            (
                "gaussian_nll-array-variance",
                lambda r: (r.normal(size=(4, 3)), r.normal(size=(4, 3)), r.uniform(0.5, 2, (4, 3))),
                dict(full=False),
            ),
        ),
        calls=(([("y_true", B), ("mean", PB)], {"variance": np.array([1.0, 2.0, 0.5])}),),
        bad=(
            ({"mean": PB[:2]}, ValueError, "y_true has shape"),
            ({"variance": 0.0}, ValueError, "variance must be positive"),
            ({"variance": np.ones(2)}, ValueError, "variance must be a scalar or broadcastable"),
            ({"y_true": np.array([-np.inf, 0.0, 1.0])}, ValueError, r"y_true contains \+-inf"),
            ({"mean": np.array([np.nan, 0.0, 1.0])}, ValueError, "mean contains NaN"),
        ),
        probabilities=(),
        exercises=ex.cases_gaussian_nll,
    ),
    "perplexity": Function(
        doc=r"""
Perplexity: the exponential of the mean token negative log-likelihood.

.. math:: \mathrm{PPL} = \exp\Big(\frac{1}{|\mathcal K|}
          \sum_{t \in \mathcal K} -\log \operatorname{softmax}(z_t)_{y_t}\Big)

over the tokens :math:`\mathcal K` not equal to ``ignore_index``. The mean
is taken in log space (log-softmax), so large vocabularies and confident
models stay finite; TorchMetrics' ``Perplexity`` (softmax, then log) can
return inf in float32 where this does not. A uniform model over :math:`V`
tokens has perplexity :math:`V`.
""",
        example="""
>>> float(xl.perplexity([0, 1, 2], [[0.0, 0.0, 0.0]] * 3))   # uniform over 3
3.0
""",
        parity=(
            ("perplexity", lambda r: (labels(r, 11, 3, 6), logits(r, 3, 6, 11)), {}),
            ("perplexity-ignore", lambda r: (padded_labels(r, 11, 3, 6), logits(r, 3, 6, 11)), dict(ignore_index=-100)),
            (
                "perplexity-axis0",
                lambda r: (padded_labels(r, 11, 6, 3).T.copy(), logits(r, 11, 3, 6)),
                dict(ignore_index=-100, axis=0),
            ),
        ),
        calls=(([("labels", L), ("logits", Z)], {}),),
        bad=(
            ({"labels": np.array([5, 0])}, ValueError, "labels must lie in"),
            ({"logits": Z * np.nan}, ValueError, "logits must be finite"),
            ({"logits": Z.astype(np.int64)}, TypeError, "logits must have a floating-point dtype"),
            ({"labels": L.astype(np.float32)}, TypeError, "labels must hold integer class indices"),
        ),
        probabilities=(),
        exercises=ex.cases_perplexity,
    ),
    "softmax_cross_entropy_grad": Function(
        doc=r"""
Gradient of the per-example softmax cross-entropy with respect to the logits.

.. math:: \frac{\partial}{\partial z_i}\Big(-\sum_c y_c \log \operatorname{softmax}(z)_c\Big)
          = \operatorname{softmax}(z)_i - y_i \qquad (\textstyle\sum_c y_c = 1)

Unreduced: one gradient row per example. Divide by the batch size for the
gradient of the ``'mean'`` loss.
""",
        example="""
>>> [float(v) for v in xl.softmax_cross_entropy_grad([0.0, 1.0], [0.0, 0.0])]
[0.5, -0.5]
""",
        parity=(
            ("softmax_ce_grad", lambda r: (dist(r, (4, 5)), logits(r, 4, 5)), {}),
            ("softmax_ce_grad-axis0", lambda r: (dist(r, (4, 5)).T.copy(), logits(r, 5, 4)), dict(axis=0)),
        ),
        calls=(([("y_true", Y), ("logits", Z)], {}),),
        bad=(
            ({"logits": Z[:1]}, ValueError, "y_true has shape"),
            ({"y_true": Y * 2}, ValueError, "y_true must"),
            ({"logits": Z * np.nan}, ValueError, "logits must be finite"),
        ),
        exercises=ex.cases_softmax_grad,
    ),
    "sigmoid_cross_entropy_grad": Function(
        doc=r"""
Gradient of the per-element sigmoid (binary) cross-entropy w.r.t. the logits.

.. math:: \frac{\partial}{\partial z}\Big(-y \log \sigma(z) - (1-y)\log(1-\sigma(z))\Big) = \sigma(z) - y
""",
        example="""
>>> [float(v) for v in xl.sigmoid_cross_entropy_grad([1.0, 0.0], [0.0, 0.0])]
[-0.5, 0.5]
""",
        parity=(("sigmoid_ce_grad", lambda r: (r.random((4, 5)), logits(r, 4, 5)), {}),),
        calls=(([("y_true", B), ("logits", PB)], {}),),
        bad=(
            ({"logits": PB[:2]}, ValueError, "y_true has shape"),
            ({"y_true": np.array([2.0, 0.0, 1.0])}, ValueError, "y_true must hold"),
        ),
        exercises=ex.cases_sigmoid_grad,
    ),
    "linear_cross_entropy": Function(
        exercises=ex.cases_linear_cross_entropy,
        tested_in="tests/test_linear_ce.py",
    ),
    "binary_focal_cross_entropy": Function(
        doc=r"""
Binary focal loss (Lin et al., 2017): cross-entropy scaled down for easy examples.

.. math:: \ell = \alpha_t\,(1 - p_t)^{\gamma}\,\mathrm{BCE}(\tilde y, \hat y), \qquad
   1 - p_t = \tilde y\,(1 - \hat y) + (1 - \tilde y)\,\hat y, \qquad
   \alpha_t = \alpha \tilde y + (1 - \alpha)(1 - \tilde y)

:math:`\tilde y = y(1-\varepsilon) + \varepsilon/2` as in :func:`binary_cross_entropy`;
``alpha=None`` gives :math:`\alpha_t = 1`; ``gamma=0`` is the plain binary
cross-entropy. Computed in log space (:math:`\log(1-p_t)` from
:math:`\log\sigma(\pm z)`), so logits of :math:`\pm 100` give exact values.
The definition of torchvision's ``sigmoid_focal_loss`` and optax's
``sigmoid_focal_loss``, whose ``alpha`` also weights the positives; the
defaults differ: torchvision applies ``alpha=0.25`` unless told
``alpha=-1`` and reduces with ``'none'``; optax has ``alpha=None``, as here.
Keras' ``BinaryFocalCrossentropy`` applies :math:`\alpha` only with
``apply_class_balancing=True`` (then ``alpha=0.25`` by default) and, given
probabilities, clips them to :math:`[10^{-7}, 1 - 10^{-7}]` (from logits it
is exact).
""",
        example="""
>>> round(float(xl.binary_focal_cross_entropy([1.0, 0.0], [0.9, 0.2])), 6)
0.00499
>>> float(xl.binary_focal_cross_entropy([1.0], [-100.0], from_logits=True))
100.0
""",
        parity=(
            *[
                (
                    f"binary-focal-{red}",
                    lambda r: (r.random((5, 3)), logits(r, 5, 3)),
                    dict(from_logits=True, gamma=1.5, alpha=0.3, label_smoothing=0.1, reduction=red),
                )
                for red in ("mean", "none")
            ],
            *[
                (
                    f"binary-focal-probs-{red}",
                    lambda r: (binary_targets(r, 5, 3), r.uniform(0.01, 0.99, (5, 3))),
                    dict(reduction=red),
                )
                for red in ("mean", "none")
            ],
        ),
        calls=(
            ([("y_true", B), ("y_pred", PB)], {"alpha": 0.25}),
            ([("y_true", B), ("y_pred", Z[0])], {"from_logits": True}),
        ),
        exercises=lambda: ex.cases_focal("binary_focal_cross_entropy"),
    ),
    "categorical_focal_cross_entropy": Function(
        doc=r"""
Categorical focal loss: each class's cross-entropy term scaled by :math:`(1 - \hat y_c)^\gamma`.

.. math:: \ell = -\sum_c \alpha_c\, \tilde y_c\, (1 - \hat y_c)^{\gamma} \log \hat y_c,
   \qquad \tilde y = (1-\varepsilon)\,y + \varepsilon/K

``alpha`` is ``None`` (:math:`\alpha_c = 1`), a scalar, or one weight per
class (shape ``(K,)``). Computed in log space (:math:`\log \hat y` from
``log_softmax``, :math:`\log(1 - \hat y_c)` from it without cancellation),
so logits of :math:`\pm 100` give exact values. Keras'
``CategoricalFocalCrossentropy`` has the same formula but applies
``alpha=0.25`` unless told otherwise, and clips probabilities to
:math:`[10^{-7}, 1 - 10^{-7}]`: for logits ``[100, -100]`` and target class
1 it gives :math:`0.25 \cdot (-\log 10^{-7}) = 4.0295` where the exact value
(with its :math:`\alpha = 0.25`) is :math:`0.25 \cdot 200 = 50`.
""",
        example="""
>>> float(xl.categorical_focal_cross_entropy([[0.0, 1.0]], [[100.0, -100.0]],
...                                          alpha=0.25, from_logits=True))
50.0
""",
        parity=(
            *[
                (
                    f"categorical-focal-{red}",
                    lambda r: (dist(r, (6, 4)), logits(r, 6, 4)),
                    dict(
                        from_logits=True,
                        gamma=2.0,
                        alpha=np.array([0.5, 1.0, 2.0, 0.25]),
                        label_smoothing=0.1,
                        reduction=red,
                    ),
                )
                for red in ("mean", "none")
            ],
            *[
                (
                    f"categorical-focal-probs-{red}",
                    lambda r: (onehot(r, 4, 6), dist(r, (6, 4))),
                    dict(alpha=0.25, reduction=red),
                )
                for red in ("mean", "none")
            ],
            (
                "categorical-focal-axis0",
                lambda r: (onehot(r, 4, 6).T.copy(), logits(r, 4, 6)),
                dict(from_logits=True, axis=0),
            ),
        ),
        calls=(
            ([("y_true", Y), ("y_pred", Z)], {"alpha": W3, "from_logits": True}),
            ([("y_true", Y), ("y_pred", PY)], {}),
        ),
        exercises=lambda: ex.cases_focal("categorical_focal_cross_entropy"),
    ),
    "expected_calibration_error": Function(
        doc=r"""
Expected calibration error of the top-class confidence (Naeini et al., 2015; Guo et al., 2017).

.. math:: \mathrm{ECE} = \sum_{b=1}^{B} \frac{|B_b|}{N}\,
          \big|\operatorname{acc}(B_b) - \operatorname{conf}(B_b)\big|

Each item's confidence :math:`\max_c p_c` falls into one of ``n_bins`` bins:
``binning='width'`` cuts (0, 1] into equal, right-closed intervals
:math:`(b/B, (b+1)/B]`, exactly (a confidence 1 ulp above an edge is above it);
``binning='mass'`` sorts the items by confidence (ties in input order) and
puts rank :math:`r` (from 0) into bin :math:`\lfloor rB/N \rfloor`, so every
bin holds :math:`N/B` items, rounded. :math:`\operatorname{acc}` is the share
of items whose argmax is the label, :math:`\operatorname{conf}` their mean
confidence. 0 is perfect; the value depends on the binning: report it with
the score. A 0-d array or tensor; 0 for no items. A metric, not a loss: in
every backend the bins are counted on the host (NumPy, float64), so it has no
gradient and, in TensorFlow, takes eager tensors only.
""",
        example="""
>>> p = [[0.95, 0.05], [0.9, 0.1], [0.4, 0.6], [0.35, 0.65]]
>>> round(float(xl.expected_calibration_error([0, 1, 1, 0], p, n_bins=2)), 4)
0.275
>>> round(float(xl.expected_calibration_error([0, 1, 1, 0], p, n_bins=2, binning="mass")), 4)
0.275
""",
        parity=_binned("expected_calibration_error"),
        calls=(([("labels", L), ("probs", PY)], {}),),
        exercises=lambda: ex.cases_calibration("expected_calibration_error"),
    ),
    "maximum_calibration_error": Function(
        doc=r"""
Maximum calibration error: the largest gap of any non-empty bin.

.. math:: \mathrm{MCE} = \max_{b:\,|B_b| > 0}\,
          \big|\operatorname{acc}(B_b) - \operatorname{conf}(B_b)\big|

The bins of :func:`expected_calibration_error` (``binning='width'`` or
``'mass'``), counted on the host as there. A small bin can decide it: read
it with the bin counts. A 0-d array or tensor; 0 for no items.
""",
        example="""
>>> p = [[0.95, 0.05], [0.9, 0.1], [0.4, 0.6], [0.35, 0.65]]
>>> round(float(xl.maximum_calibration_error([0, 1, 1, 0], p, n_bins=2, binning="mass")), 4)
0.425
""",
        parity=_binned("maximum_calibration_error"),
        calls=(([("labels", L), ("probs", PY)], {"binning": "mass"}),),
        exercises=lambda: ex.cases_calibration("maximum_calibration_error"),
    ),
    "brier_score": Function(
        doc=r"""
Brier score (Brier, 1950): squared distance between the predicted distribution and the one-hot label.

.. math:: \mathrm{BS} = \frac{1}{N} \sum_{n=1}^{N} \sum_{c=1}^{K} \big(p_{n,c} - [y_n = c]\big)^2

In :math:`[0, 2]`. For two classes it is twice the binary form
:math:`(p - y)^2` of scikit-learn's ``brier_score_loss``. A proper scoring
rule, like the cross-entropy, but bounded: a confident mistake costs at
most 2, not :math:`+\infty`.
""",
        example="""
>>> round(float(xl.brier_score([0, 1], [[0.9, 0.1], [0.4, 0.6]])), 6)
0.17
""",
        parity=(
            *[
                (f"brier-{red}", lambda r: (labels(r, 4, 9), dist(r, (9, 4))), dict(reduction=red))
                for red in ("mean", "none")
            ],
        ),
        calls=(([("labels", L), ("probs", PY)], {}),),
        exercises=lambda: ex.cases_calibration("brier_score"),
    ),
    "fit_temperature": Function(
        doc=r"""
The temperature :math:`T` that minimises the mean NLL of ``softmax(logits / T)`` (Guo et al., 2017).

.. math:: T^\star = \arg\min_{T > 0}\; \frac{1}{N}\sum_{n=1}^{N}
          \Big(\operatorname{LSE}(z_n / T) - z_{n, y_n} / T\Big)

Fit it on held-out logits, never on the training set (where the NLL is
smallest at a small :math:`T`). The NLL is convex in :math:`\beta = 1/T`
(its second derivative is the variance of the logit under
:math:`\operatorname{softmax}(\beta z)`), so a safeguarded Newton iteration on
:math:`\beta` finds the minimum; :math:`T` is searched in :math:`[0.01, 100]`.
When every prediction is right the NLL keeps falling as :math:`T \to 0`; the
search then stops at the bound or where the NLL no longer changes in float64. Searched in
float64; returns :math:`T` as a 0-d array or
tensor of the logits' (loss) dtype.
""",
        example="""
>>> z = [[4.0, 0.0], [4.0, 0.0], [4.0, 0.0], [0.0, 4.0]]
>>> round(float(xl.fit_temperature(z, [0, 0, 1, 1])), 4)  # 3 of 4 right: softmax(z/T) = 0.75
3.641
""",
        parity=(("fit_temperature", lambda r: (logits(r, 40, 5), labels(r, 5, 40)), {}),),
        calls=(([("logits", Z), ("labels", L)], {}),),
        probabilities=(),
        exercises=ex.cases_fit_temperature,
    ),
}

# Each backend's own extras, after the table's functions in its ``__all__``.
EXTRAS = {
    "numpy": ("gradient_descent",),
    "torch": ("vocab_parallel_cross_entropy",),
    "tensorflow": ("keras_loss", "LinearCrossEntropyHead"),
}
COMMON = tuple(FUNCTIONS)


def public_names(backend: str) -> list[str]:
    """``__all__`` of ``xentlib.<backend>``."""
    return [*COMMON, *EXTRAS[backend]]


def shared(fn):
    """Decorator: the reference text of ``fn``, ``fn``'s own docstring (what differs), its doctest.

    A function without a doctest of its own gets the table's example, after
    ``from xentlib import <backend> as xl``, so it runs against its own backend.
    """
    record = FUNCTIONS[fn.__name__]
    own = inspect.cleandoc(fn.__doc__ or "")
    parts = [record.doc.strip()] + ([own] if own else [])
    if ">>>" not in own and record.example:
        backend = fn.__module__.rsplit(".", 1)[-1]
        parts.append(f">>> from xentlib import {backend} as xl\n{record.example.strip()}")
    fn.__doc__ = "\n\n".join(parts)
    return fn
