"""LinearCrossEntropyHead: a tiny language model trained with model.fit and the fused loss
follows the same trajectory as the naive model (Dense logits + Keras' sparse CE), and
saves and loads."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
import tensorflow as tf  # noqa: E402  (after the skip)

from xentlib.tensorflow import LinearCrossEntropyHead  # noqa: E402  (after the skip)

VOCAB, DIM, T = 30, 8, 6


def _data(seed=0, batch=16):
    rng = np.random.default_rng(seed)
    text = rng.integers(0, VOCAB, (batch, T + 1))
    return text[:, :-1], text[:, 1:]


def _body(tokens):
    hidden = keras.layers.Embedding(VOCAB, DIM, name="embed")(tokens)
    return keras.layers.Dense(DIM, activation="tanh", name="mix")(hidden)


def _fused_model(**options):
    tokens, labels = keras.Input((T,), dtype="int32"), keras.Input((T,), dtype="int32")
    predicted = LinearCrossEntropyHead(VOCAB, use_bias=True, name="head", **options)(
        [_body(tokens), labels])
    model = keras.Model([tokens, labels], predicted)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    return model


def _naive_model(fused):
    tokens = keras.Input((T,), dtype="int32")
    logits = keras.layers.Dense(VOCAB, name="out")(_body(tokens))
    model = keras.Model(tokens, logits)
    for name in ("embed", "mix"):
        model.get_layer(name).set_weights(fused.get_layer(name).get_weights())
    weight, bias = fused.get_layer("head").get_weights()
    model.get_layer("out").set_weights([weight.T, bias])
    model.compile(optimizer=keras.optimizers.SGD(0.5),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_tiny_language_model_trains_like_the_naive_one():
    keras.utils.set_random_seed(0)
    x, y = _data()
    fused = _fused_model()
    naive = _naive_model(fused)
    fused_loss = fused.fit([x, y], epochs=4, batch_size=8, shuffle=False, verbose=0)
    naive_loss = naive.fit(x, y, epochs=4, batch_size=8, shuffle=False, verbose=0)
    np.testing.assert_allclose(fused_loss.history["loss"], naive_loss.history["loss"], rtol=1e-5)
    assert fused_loss.history["loss"][-1] < fused_loss.history["loss"][0]
    weight, bias = fused.get_layer("head").get_weights()
    kernel, naive_bias = naive.get_layer("out").get_weights()
    np.testing.assert_allclose(weight, kernel.T, atol=1e-5)
    np.testing.assert_allclose(bias, naive_bias, atol=1e-5)
    head = fused.get_layer("head")
    hidden = fused.get_layer("mix").output
    body = keras.Model(fused.inputs[0], hidden)
    np.testing.assert_allclose(head.logits(body(x)), naive(x), atol=1e-5)


def test_predicted_classes_and_save_load(tmp_path):
    keras.utils.set_random_seed(1)
    x, y = _data(1)
    model = _fused_model(ignore_index=0, z_loss=1e-3, label_smoothing=0.1)
    model.fit([x, y], epochs=1, verbose=0)
    predicted = model.predict([x, y], verbose=0)
    assert predicted.shape == y.shape and predicted.dtype == np.int64
    path = tmp_path / "lm.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_layer("head").get_config()["z_loss"] == 1e-3
    np.testing.assert_allclose(loaded.evaluate([x, y], verbose=0), model.evaluate([x, y], verbose=0),
                               rtol=1e-6)
    np.testing.assert_array_equal(loaded.predict([x, y], verbose=0), predicted)
    assert tf.is_tensor(loaded.get_layer("head").logits(tf.zeros((1, DIM))))
