r"""The reference text of every public function, written once for the three backends.

Each backend's function carries only what differs there, and its own doctest;
:func:`shared` puts the reference text (summary, formula, conventions) in front
of it. The conventions common to all are stated in :mod:`xentlib.numpy`.
"""
from __future__ import annotations

import inspect

REFERENCE = {
    "logsumexp": r"""
Log-sum-exp, computed without overflow.

.. math:: \operatorname{LSE}(z) = m + \log \sum_i e^{z_i - m}, \qquad m = \max_i z_i

Subtracting the maximum keeps every exponent :math:`\le 0`, so nothing
overflows; the largest term is exactly 1, so nothing underflows to
:math:`\log 0`. Matches ``scipy.special.logsumexp`` and ``torch.logsumexp``
(note SciPy's default is over *all* axes; here it is the last one).
""",

    "softmax": r"""
Softmax: turns logits into a probability distribution.

.. math:: \operatorname{softmax}(z)_i = \frac{e^{z_i}}{\sum_j e^{z_j}} = e^{z_i - \operatorname{LSE}(z)}

Invariant to adding a constant to every logit.
""",

    "log_softmax": r"""
Log-softmax, the log-probabilities of a categorical distribution.

.. math:: \log \operatorname{softmax}(z)_i = z_i - \operatorname{LSE}(z)
          = (z_i - m) - \log \sum_j e^{z_j - m}

The second form (as SciPy and PyTorch compute it) avoids cancellation
between two large numbers for the dominant class. Finite for every finite
input, unlike ``log(softmax(z))``, whose small probabilities underflow to 0
and give :math:`-\infty`.
""",

    "sigmoid": r"""
Logistic sigmoid, computed without overflow.

.. math:: \sigma(z) = \frac{1}{1 + e^{-z}} = e^{-\operatorname{softplus}(-z)},
   \qquad \operatorname{softplus}(t) = \log(1 + e^{t})
""",

    "log_sigmoid": r"""
Log of the sigmoid, stable for any input.

.. math:: \log \sigma(z) = -\operatorname{softplus}(-z) = -\log(1 + e^{-z})
""",

    "entropy": r"""
Shannon entropy of the distribution(s) ``p`` along ``axis``.

.. math:: H(P) = -\sum_i p_i \log p_i, \qquad 0 \log 0 = 0

Matches ``scipy.stats.entropy(p, base=base, axis=axis)`` (which also
normalises ``p``; here ``p`` must already sum to 1).
""",

    "cross_entropy": r"""
Cross-entropy of ``q`` relative to the true distribution ``p``.

.. math:: H(P, Q) = -\sum_i p_i \log q_i = H(P) + D_{\mathrm{KL}}(P \,\|\, Q)

:math:`+\infty` where some :math:`p_i > 0` has :math:`q_i = 0`.
""",

    "kl_divergence": r"""
Kullback–Leibler divergence of ``q`` from ``p`` (argument order as SciPy's).

.. math:: D_{\mathrm{KL}}(P \,\|\, Q) = \sum_i p_i \log \frac{p_i}{q_i} \;\ge\; 0

Zero only when :math:`P = Q`; not symmetric. Matches
``scipy.special.rel_entr(p, q).sum(axis)``; for a batch of rows its mean
equals ``torch.nn.functional.kl_div(q.log(), p, reduction='batchmean')``
(note PyTorch's reversed argument order and log-input).
""",

    "joint_entropy": r"""
Joint entropy of a table :math:`p(x, y)`, X along axis -2, Y along axis -1.

.. math:: H(X, Y) = -\sum_{x, y} p(x, y) \log p(x, y)
""",

    "conditional_entropy": r"""
Conditional entropy :math:`H(Y \mid X)`; X along axis -2, Y along axis -1.

.. math:: H(Y \mid X) = -\sum_{x, y} p(x, y) \log \frac{p(x, y)}{p(x)} = H(X, Y) - H(X)
""",

    "mutual_information": r"""
Mutual information of X (axis -2) and Y (axis -1).

.. math:: I(X; Y) = \sum_{x, y} p(x, y) \log \frac{p(x, y)}{p(x)\,p(y)}
          = D_{\mathrm{KL}}\big(p(x, y) \,\|\, p(x)\,p(y)\big) = H(Y) - H(Y \mid X)

Round-off can leave :math:`-10^{-17}` for independent variables; the result
is clipped at 0, its true lower bound.
""",

    "smooth_labels": r"""
Standard label smoothing: mix the target with the uniform distribution.

.. math:: \tilde y = (1 - \varepsilon)\, y + \frac{\varepsilon}{K}

with :math:`K` the number of classes along ``axis``. This is what PyTorch's
``cross_entropy(label_smoothing=ε)``, Keras' categorical losses and optax's
``smooth_labels`` use. The seeds' additive smoothing :math:`(P + \epsilon)/Z`
(with :math:`Z = 1 + K\epsilon`) is the same operation with
:math:`\varepsilon = K\epsilon / (1 + K\epsilon)`.
""",

    "categorical_cross_entropy": r"""
Categorical cross-entropy (log loss) for one-hot or probability targets.

.. math:: \ell_n = -\sum_{c=1}^{C} \tilde y_{n,c} \log \hat y_{n,c},
   \qquad \hat y = \operatorname{softmax}(z) \text{ if from\_logits}

with :math:`\tilde y` the targets after :func:`smooth_labels`. ``'mean'``
divides by the number of rows (every position but the class axis), as
PyTorch and Keras do. Unlike Keras, probabilities are neither renormalised
nor clipped: rows must sum to 1, and :math:`\hat y_c = 0` with
:math:`\tilde y_c > 0` gives :math:`+\infty`.
""",

    "sparse_categorical_cross_entropy": r"""
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
sequence loss, padding masked with ``ignore_index``.
""",

    "binary_cross_entropy": r"""
Binary and multi-label cross-entropy, one independent Bernoulli per element.

.. math:: \ell = -\big[\,w_+\, \tilde y \log \hat y + (1 - \tilde y) \log (1 - \hat y)\,\big],
   \qquad \tilde y = y (1 - \varepsilon) + \tfrac{\varepsilon}{2},
   \qquad \hat y = \sigma(z) \text{ if from\_logits}

Smoothing moves every target towards 1/2, as Keras' binary losses do
(PyTorch's BCE has no smoothing). ``pos_weight`` (:math:`w_+`, a scalar or
one value per class on the last axis) multiplies the positive term, as in
PyTorch's ``binary_cross_entropy_with_logits(pos_weight=...)`` and
``tf.nn.weighted_cross_entropy_with_logits``. ``'mean'`` averages over all
elements. With logits, :math:`\log\sigma(z) = -\operatorname{softplus}(-z)`
and :math:`\log(1-\sigma(z)) = -\operatorname{softplus}(z)` stay finite.
""",

    "mean_squared_error": r"""
Mean squared error, the regression loss of the seeds.

.. math:: \mathrm{MSE} = \frac{1}{N} \sum_{i=1}^{N} (y_i - \hat y_i)^2

``'none'`` returns the squared error of every element (as PyTorch's
``mse_loss``; Keras' ``MeanSquaredError`` averages the last axis first).
``'mean'`` divides by the number of elements. It equals
:math:`2\sigma^2` times :func:`gaussian_nll` minus a constant; see there.
""",

    "gaussian_nll": r"""
Negative log-likelihood of ``y_true`` under :math:`\mathcal N(\text{mean}, \text{variance})`.

.. math:: -\log \mathcal N(y \mid \mu, \sigma^2) = \frac{(y - \mu)^2}{2\sigma^2}
          + \frac{1}{2}\log \sigma^2 + \frac{1}{2}\log 2\pi

``full=False`` drops the constant :math:`\tfrac12 \log 2\pi` (PyTorch's
``gaussian_nll_loss`` default). With a fixed variance the NLL is an affine
function of the squared error, so minimising MSE *is* maximum likelihood
under Gaussian noise: :math:`\mathrm{MSE} = 2\sigma^2 (\mathrm{NLL} - \tfrac12\log 2\pi\sigma^2)`.
``variance`` is a positive scalar or an array broadcastable to ``y_true``.
""",

    "perplexity": r"""
Perplexity: the exponential of the mean token negative log-likelihood.

.. math:: \mathrm{PPL} = \exp\Big(\frac{1}{|\mathcal K|}
          \sum_{t \in \mathcal K} -\log \operatorname{softmax}(z_t)_{y_t}\Big)

over the tokens :math:`\mathcal K` not equal to ``ignore_index``. The mean
is taken in log space (log-softmax), so large vocabularies and confident
models stay finite; TorchMetrics' ``Perplexity`` (softmax, then log) can
return inf in float32 where this does not. A uniform model over :math:`V`
tokens has perplexity :math:`V`.
""",

    "softmax_cross_entropy_grad": r"""
Gradient of the per-example softmax cross-entropy with respect to the logits.

.. math:: \frac{\partial}{\partial z_i}\Big(-\sum_c y_c \log \operatorname{softmax}(z)_c\Big)
          = \operatorname{softmax}(z)_i - y_i \qquad (\textstyle\sum_c y_c = 1)

Unreduced: one gradient row per example. Divide by the batch size for the
gradient of the ``'mean'`` loss.
""",

    "sigmoid_cross_entropy_grad": r"""
Gradient of the per-element sigmoid (binary) cross-entropy w.r.t. the logits.

.. math:: \frac{\partial}{\partial z}\Big(-y \log \sigma(z) - (1-y)\log(1-\sigma(z))\Big) = \sigma(z) - y
""",

    "gradient_descent": r"""
Plain (full-batch) gradient descent, the seeds' optimisation algorithm.

.. math:: \theta_{t+1} = \theta_t - \eta \, \nabla_\theta L(\theta_t)

``loss_and_grad(params)`` returns ``(loss, grad)`` with ``grad`` shaped like
``params``. Returns the final parameters and the loss before every step
(``steps`` values), so a caller can plot the training curve.
""",

    "binary_focal_cross_entropy": r"""
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
``apply_class_balancing=True`` (then ``alpha=0.25`` by default) and clips
probabilities to :math:`[10^{-7}, 1 - 10^{-7}]`.
""",

    "categorical_focal_cross_entropy": r"""
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

    "expected_calibration_error": r"""
Expected calibration error of the top-class confidence (Naeini et al., 2015; Guo et al., 2017).

.. math:: \mathrm{ECE} = \sum_{b=1}^{B} \frac{|B_b|}{N}\,
          \big|\operatorname{acc}(B_b) - \operatorname{conf}(B_b)\big|

Each item's confidence :math:`\max_c p_c` falls into one of ``n_bins`` bins:
``binning='width'`` cuts (0, 1] into equal, right-closed intervals;
``binning='mass'`` sorts the items by confidence (ties in input order) and
puts rank :math:`r` (from 0) into bin :math:`\lfloor rB/N \rfloor`, so every
bin holds :math:`N/B` items, rounded. :math:`\operatorname{acc}` is the share
of items whose argmax is the label, :math:`\operatorname{conf}` their mean
confidence. 0 is perfect; the value depends on the binning: report it with
the score. A 0-d array or tensor; 0 for no items. A metric, not a loss: in
every backend the bins are counted on the host (NumPy, float64), so it has no
gradient and, in TensorFlow, takes eager tensors only.
""",

    "maximum_calibration_error": r"""
Maximum calibration error: the largest gap of any non-empty bin.

.. math:: \mathrm{MCE} = \max_{b:\,|B_b| > 0}\,
          \big|\operatorname{acc}(B_b) - \operatorname{conf}(B_b)\big|

The bins of :func:`expected_calibration_error` (``binning='width'`` or
``'mass'``), counted on the host as there. A small bin can decide it: read
it with the bin counts. A 0-d array or tensor; 0 for no items.
""",

    "brier_score": r"""
Brier score (Brier, 1950): squared distance between the predicted distribution and the one-hot label.

.. math:: \mathrm{BS} = \frac{1}{N} \sum_{n=1}^{N} \sum_{c=1}^{K} \big(p_{n,c} - [y_n = c]\big)^2

In :math:`[0, 2]`. For two classes it is twice the binary form
:math:`(p - y)^2` of scikit-learn's ``brier_score_loss``. A proper scoring
rule, like the cross-entropy, but bounded: a confident mistake costs at
most 2, not :math:`+\infty`.
""",

    "fit_temperature": r"""
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

}

# The doctests that read the same in every backend, written once: ``shared`` puts them in
# each backend's docstring after ``from xentlib import <backend> as xl``, so each still runs
# against its own backend.
EXAMPLES = {
    "logsumexp": """
>>> float(xl.logsumexp([1000.0, 1000.0]))   # naive: log(inf) = inf
1000.6931471805599
""",
    "softmax": """
>>> [round(float(v), 4) for v in xl.softmax([1.0, 2.0, 3.0])]
[0.09, 0.2447, 0.6652]
""",
    "log_softmax": """
>>> [float(v) for v in xl.log_softmax([0.0, 1000.0])]
[-1000.0, 0.0]
""",
    "sigmoid": """
>>> [float(v) for v in xl.sigmoid([-1000.0, 0.0, 1000.0])]
[0.0, 0.5, 1.0]
""",
    "log_sigmoid": """
>>> [round(float(v), 6) for v in xl.log_sigmoid([-1000.0, 0.0])]
[-1000.0, -0.693147]
""",
    "smooth_labels": """
>>> [float(v) for v in xl.smooth_labels([0.0, 1.0, 0.0, 0.0], 0.1)]
[0.025, 0.925, 0.025, 0.025]
""",
    "sparse_categorical_cross_entropy": """
>>> z = [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]]
>>> round(float(xl.sparse_categorical_cross_entropy([0, 2], z, from_logits=True)), 6)
0.175456
""",
    "perplexity": """
>>> float(xl.perplexity([0, 1, 2], [[0.0, 0.0, 0.0]] * 3))   # uniform over 3
3.0
""",
    "softmax_cross_entropy_grad": """
>>> [float(v) for v in xl.softmax_cross_entropy_grad([0.0, 1.0], [0.0, 0.0])]
[0.5, -0.5]
""",
    "sigmoid_cross_entropy_grad": """
>>> [float(v) for v in xl.sigmoid_cross_entropy_grad([1.0, 0.0], [0.0, 0.0])]
[-0.5, 0.5]
""",
    "entropy": """
>>> float(xl.entropy([0.5, 0.5], base=2))
1.0
""",
    "cross_entropy": """
>>> round(float(xl.cross_entropy([0.6, 0.2, 0.2], [0.5, 0.3, 0.2])), 6)
0.97857
""",
    "kl_divergence": """
>>> round(float(xl.kl_divergence([0.6, 0.2, 0.2], [0.5, 0.3, 0.2])), 6)
0.0283
""",
    "joint_entropy": """
>>> float(xl.joint_entropy([[0.25, 0.25], [0.25, 0.25]], base=2))
2.0
""",
    "conditional_entropy": """
>>> float(xl.conditional_entropy([[0.5, 0.0], [0.0, 0.5]]))   # Y = X: no doubt left
0.0
""",
    "mutual_information": """
>>> float(xl.mutual_information([[0.5, 0.0], [0.0, 0.5]], base=2))   # one shared bit
1.0
""",
    "categorical_cross_entropy": """
>>> round(float(xl.categorical_cross_entropy([[0.0, 1.0, 0.0]], [[0.1, 0.7, 0.2]])), 6)
0.356675
""",
    "binary_cross_entropy": """
>>> round(float(xl.binary_cross_entropy([1.0, 0.0], [0.9, 0.2])), 6)
0.164252
""",
    "mean_squared_error": """
>>> float(xl.mean_squared_error([1.0, 2.0], [1.5, 1.0]))
0.625
""",
    "gaussian_nll": """
>>> round(float(xl.gaussian_nll([0.0], [0.0])), 6)   # -log of N(0; 0, 1) = log sqrt(2 pi)
0.918939
""",
    "binary_focal_cross_entropy": """
>>> round(float(xl.binary_focal_cross_entropy([1.0, 0.0], [0.9, 0.2])), 6)
0.00499
>>> float(xl.binary_focal_cross_entropy([1.0], [-100.0], from_logits=True))
100.0
""",
    "categorical_focal_cross_entropy": """
>>> float(xl.categorical_focal_cross_entropy([[0.0, 1.0]], [[100.0, -100.0]],
...                                          alpha=0.25, from_logits=True))
50.0
""",
    "expected_calibration_error": """
>>> p = [[0.95, 0.05], [0.9, 0.1], [0.4, 0.6], [0.35, 0.65]]
>>> round(float(xl.expected_calibration_error([0, 1, 1, 0], p, n_bins=2)), 4)
0.275
>>> round(float(xl.expected_calibration_error([0, 1, 1, 0], p, n_bins=2, binning="mass")), 4)
0.275
""",
    "maximum_calibration_error": """
>>> p = [[0.95, 0.05], [0.9, 0.1], [0.4, 0.6], [0.35, 0.65]]
>>> round(float(xl.maximum_calibration_error([0, 1, 1, 0], p, n_bins=2, binning="mass")), 4)
0.425
""",
    "brier_score": """
>>> round(float(xl.brier_score([0, 1], [[0.9, 0.1], [0.4, 0.6]])), 6)
0.17
""",
    "fit_temperature": """
>>> z = [[4.0, 0.0], [4.0, 0.0], [4.0, 0.0], [0.0, 4.0]]
>>> round(float(xl.fit_temperature(z, [0, 0, 1, 1])), 4)  # 3 of 4 right: softmax(z/T) = 0.75
3.641
""",
}

# The API table: the functions every backend exports, in the order of the docs' API table,
# then each backend's own extras. A new function is one entry here (and one in REFERENCE).
COMMON = (
    "logsumexp", "softmax", "log_softmax", "sigmoid", "log_sigmoid",
    "entropy", "cross_entropy", "kl_divergence",
    "joint_entropy", "conditional_entropy", "mutual_information",
    "smooth_labels",
    "categorical_cross_entropy", "sparse_categorical_cross_entropy",
    "binary_cross_entropy",
    "mean_squared_error", "gaussian_nll", "perplexity",
    "softmax_cross_entropy_grad", "sigmoid_cross_entropy_grad",
    "linear_cross_entropy",
    "binary_focal_cross_entropy", "categorical_focal_cross_entropy",
    "expected_calibration_error", "maximum_calibration_error", "brier_score", "fit_temperature",
)
EXTRAS = {
    "numpy": ("gradient_descent",),
    "torch": ("vocab_parallel_cross_entropy",),
    "tensorflow": ("keras_loss", "LinearCrossEntropyHead"),
}


def public_names(backend: str) -> list[str]:
    """``__all__`` of ``xentlib.<backend>``."""
    return [*COMMON, *EXTRAS[backend]]


def shared(fn):
    """Decorator: the reference text of ``fn``, ``fn``'s own docstring (what differs), its doctest.

    A function without a doctest of its own gets its example from :data:`EXAMPLES`.
    """
    own = inspect.cleandoc(fn.__doc__ or "")
    parts = [REFERENCE[fn.__name__].strip()] + ([own] if own else [])
    if ">>>" not in own and fn.__name__ in EXAMPLES:
        backend = fn.__module__.rsplit(".", 1)[-1]
        parts.append(f">>> from xentlib import {backend} as xl\n{EXAMPLES[fn.__name__].strip()}")
    fn.__doc__ = "\n\n".join(parts)
    return fn
