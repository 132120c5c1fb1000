"""xentlib.training: the shared loop and progress lines (one print per run)."""
from __future__ import annotations

import builtins

import numpy as np
import pytest
import torch

from xentlib.training import EpochLog, fit_torch, keras_progress


def count_prints(monkeypatch):
    calls = []
    real_print = builtins.print
    monkeypatch.setattr(builtins, "print", lambda *a, **k: (calls.append(a), real_print(*a, **k)))
    return calls


def regression(seed=0, n=50):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=gen)
    return x, x @ torch.tensor([1.0, -2.0, 0.5])


def train(every=None, generator=None, epochs=6, batch_size=16, validation=True):
    torch.manual_seed(0)
    x, y = regression()
    net = torch.nn.Linear(3, 1)
    mse = lambda xb, yb: ((net(xb)[:, 0] - yb) ** 2).mean()
    return fit_torch(net, mse, (x, y), torch.optim.SGD(net.parameters(), lr=0.05),
                     epochs=epochs, batch_size=batch_size, every=every, generator=generator,
                     validation=(x, y) if validation else None)


def test_epoch_log_reports_first_every_kth_and_last(capsys):
    log = EpochLog(every=3, epochs=7, line=lambda e, logs: f"{e}:{logs['loss']}")
    for epoch in range(1, 8):
        log.record(epoch, {"loss": epoch * 10})
    assert capsys.readouterr().out == ""                  # nothing before the end
    log.flush()
    assert capsys.readouterr().out == "1:10\n4:40\n7:70\n"
    log.flush()
    assert capsys.readouterr().out == ""                  # flushed lines are gone


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_counts_are_refused(bad):
    with pytest.raises(ValueError, match="^every must be a positive integer"):
        EpochLog(every=bad)
    with pytest.raises(ValueError, match="^batch_size must be a positive integer"):
        train(batch_size=bad)


def test_data_of_unequal_lengths_is_refused():
    net = torch.nn.Linear(3, 1)
    with pytest.raises(ValueError, match="^data must be tensors of one length"):
        fit_torch(net, None, (torch.zeros(4, 3), torch.zeros(5)), None, epochs=1, batch_size=2)


def test_fit_torch_curves_are_seeded_and_learn():
    first, second = train(), train()
    assert first == second                                # same seed, same shuffles
    assert set(first) == {"loss", "val_loss"} and len(first["loss"]) == 6
    assert first["val_loss"][-1] < 0.1 * first["val_loss"][0]
    assert set(train(validation=False)) == {"loss"}


def test_fit_torch_training_loss_is_the_batch_size_weighted_mean():
    # lr=0: the model never changes, so the epoch's loss is the full-data loss.
    torch.manual_seed(0)
    x, y = regression(n=37)
    net = torch.nn.Linear(3, 1)
    mse = lambda xb, yb: ((net(xb)[:, 0] - yb) ** 2).mean()
    curve = fit_torch(net, mse, (x, y), torch.optim.SGD(net.parameters(), lr=0.0),
                      epochs=2, batch_size=10, validation=(x, y))
    np.testing.assert_allclose(curve["loss"], curve["val_loss"], rtol=1e-5)


def test_fit_torch_generator_leaves_the_global_stream_alone():
    x, y = regression()
    net = torch.nn.Linear(3, 1)
    mse = lambda xb, yb: ((net(xb)[:, 0] - yb) ** 2).mean()
    before = torch.get_rng_state()
    fit_torch(net, mse, (x, y), torch.optim.SGD(net.parameters(), lr=0.05), epochs=2,
              batch_size=16, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), before)
    seeded = lambda: train(generator=torch.Generator().manual_seed(5))
    assert seeded() == seeded() != train()


def test_fit_torch_prints_progress_once_at_the_end(monkeypatch, capsys):
    calls = count_prints(monkeypatch)
    train(every=2, epochs=5)
    assert len(calls) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1", "epoch 3", "epoch 5"]
    assert "training loss" in lines[0] and "held-out loss" in lines[0]


def test_keras_progress_prints_once_at_the_end(monkeypatch, capsys):
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    y = x @ np.array([1.0, -2.0, 0.5], dtype="float32")
    model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    calls = count_prints(monkeypatch)
    model.fit(x, y, epochs=4, batch_size=8, verbose=0, validation_data=(x, y),
              callbacks=[keras_progress(every=3)])
    assert len(calls) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1", "epoch 4"]
    assert "held-out loss" in lines[-1]
