"""Keras: xentlib losses save and load with a compiled model; plain functions compile."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest

import xentlib.keras
from xentlib import tensorflow as xl


def _model(units):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(units)])


@pytest.mark.parametrize("fn, options, targets", [
    ("sparse_categorical_cross_entropy", dict(from_logits=True, ignore_index=-1, class_weight=[1.0, 2.0, 0.5]),
     lambda r: np.where(r.random(32) < 0.2, -1, r.integers(0, 3, 32))),
    ("categorical_cross_entropy", dict(from_logits=True, label_smoothing=0.1),
     lambda r: np.eye(3, dtype=np.float32)[r.integers(0, 3, 32)]),
])
def test_saved_and_loaded_model_gives_the_same_loss(tmp_path, fn, options, targets):
    r = np.random.default_rng(0)
    x, y = r.normal(size=(32, 4)).astype(np.float32), targets(r)
    model = _model(3)
    model.compile(optimizer="sgd", loss=xl.keras_loss(fn, **options))
    model.fit(x, y, epochs=1, verbose=0)
    before = model.evaluate(x, y, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.loss.get_config()["fn"] == fn
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(before, rel=1e-6)


def test_sample_weight_as_keras_own_losses():
    r = np.random.default_rng(1)
    y, z, w = r.integers(0, 3, 8), r.normal(size=(8, 3)).astype(np.float32), r.random(8)
    ours = xentlib.keras.Loss("sparse_categorical_cross_entropy", from_logits=True)
    theirs = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert float(ours(y.astype(np.float32), z, sample_weight=w)) == pytest.approx(
        float(theirs(y, z, sample_weight=w)), rel=1e-6)


def test_compile_with_plain_functions():
    r = np.random.default_rng(2)
    x = r.normal(size=(32, 4)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    model = _model(1)
    model.compile(optimizer="sgd", loss=lambda t, p: xl.binary_cross_entropy(t, p, from_logits=True))
    model.fit(x, y, epochs=1, verbose=0)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(
        float(xl.binary_cross_entropy(y, model(x), from_logits=True)), rel=1e-5)
    model.compile(optimizer="sgd", loss=xl.mean_squared_error)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(float(xl.mean_squared_error(y, model(x))), rel=1e-5)


def test_unknown_name_is_refused():
    with pytest.raises(ValueError, match="fn must name a loss"):
        xentlib.keras.Loss("softmax")


@pytest.mark.parametrize("output_mask", [False, True], ids=["no mask", "Embedding mask"])
def test_ignore_index_is_the_masked_mean_with_or_without_a_keras_mask(output_mask):
    """Padding (0) masked by ignore_index, alone or together with Embedding(mask_zero=True):
    the loss divides by the real tokens once (not scaled twice)."""
    r = np.random.default_rng(2)
    tokens = r.integers(1, 6, size=(3, 6))
    tokens[0, 4:], tokens[1, 2:] = 0, 0  # 11 real tokens out of 18 positions
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,), dtype="int32"),
                              keras.layers.Embedding(6, 4, mask_zero=output_mask),
                              keras.layers.Dense(6)])
    loss = xentlib.keras.Loss("sparse_categorical_cross_entropy", from_logits=True, ignore_index=0)
    model.compile(loss=loss)
    logits = model(tokens)
    expected = float(xl.sparse_categorical_cross_entropy(tokens, logits, from_logits=True,
                                                         ignore_index=0))
    assert model.evaluate(tokens, tokens, verbose=0) == pytest.approx(expected, rel=1e-6)
