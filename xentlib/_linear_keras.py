"""A Keras output layer whose loss is the fused linear cross-entropy, for ``model.fit``.

:class:`LinearCrossEntropyHead` is an *endpoint* layer (Keras' pattern for a
layer that owns its loss): it holds the ``(V, d)`` output weight, takes the
hidden states and the labels, adds ``linear_cross_entropy`` of them to the
model's losses with ``add_loss``, and returns the predicted classes (the argmax,
computed in the same pass), so the ``(batch, time, V)`` logits never exist in
training. The model takes the labels as a second input and is compiled without
a loss; it saves and loads like any Keras model.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from xentlib._linear_tensorflow import linear_cross_entropy

__all__ = ["LinearCrossEntropyHead"]


@keras.saving.register_keras_serializable(package="xentlib")
class LinearCrossEntropyHead(keras.layers.Layer):
    r"""Output projection to ``vocab_size`` classes with the fused cross-entropy as its loss.

    .. math:: L = \frac{1}{|\mathcal K|} \sum_{n \in \mathcal K}
              \big(\operatorname{lse}(W h_n + b) - (W h_n + b)_{y_n}\big)

    ``head([hidden, labels])`` adds the loss and returns the argmax classes
    (``labels``' shape); :meth:`logits` gives the logits for prediction or
    generation. The options are those of ``linear_cross_entropy`` (mean over
    the items whose label is not ``ignore_index``). ``weight`` has shape
    ``(vocab_size, d)``, the transpose of a ``Dense`` kernel. Keras applies
    ``fit(sample_weight=...)`` to compiled losses only, not to a layer's own
    loss: mask padding with ``ignore_index`` instead.

    >>> import keras, numpy as np
    >>> from xentlib.tensorflow import LinearCrossEntropyHead
    >>> tokens, labels = keras.Input((8,), dtype="int32"), keras.Input((8,), dtype="int32")
    >>> hidden = keras.layers.Embedding(20, 4)(tokens)
    >>> predicted = LinearCrossEntropyHead(20, ignore_index=0)([hidden, labels])
    >>> model = keras.Model([tokens, labels], predicted)
    >>> model.compile(optimizer="sgd")
    >>> x = np.random.default_rng(0).integers(1, 20, (4, 8))
    >>> history = model.fit([x, x], epochs=1, verbose=0)
    >>> bool(np.isfinite(history.history["loss"][0]))
    True
    """

    def __init__(self, vocab_size, *, use_bias=False, ignore_index=None, label_smoothing=0.0,
                 z_loss=0.0, softcap=None, chunk_size=None, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        self.use_bias = bool(use_bias)
        self.options = dict(ignore_index=ignore_index, label_smoothing=label_smoothing,
                            z_loss=z_loss, softcap=softcap, chunk_size=chunk_size)

    def build(self, input_shape):
        dim = input_shape[0][-1]
        self.weight = self.add_weight(shape=(self.vocab_size, dim), name="weight",
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(shape=(self.vocab_size,), name="bias",
                                    initializer="zeros") if self.use_bias else None

    def call(self, inputs):
        hidden, labels = inputs
        bias = None if self.bias is None else tf.convert_to_tensor(self.bias)
        loss, extras = linear_cross_entropy(hidden, tf.convert_to_tensor(self.weight), labels,
                                            bias=bias, extras=("argmax",), **self.options)
        self.add_loss(loss)
        return extras["argmax"]

    def logits(self, hidden):
        """``hidden @ weight.T + bias``: the full logits (for prediction, not for training)."""
        z = tf.matmul(hidden, tf.convert_to_tensor(self.weight), transpose_b=True)
        return z if self.bias is None else z + tf.convert_to_tensor(self.bias)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1])

    def get_config(self):
        return dict(super().get_config(), vocab_size=self.vocab_size, use_bias=self.use_bias,
                    **self.options)
