"""xentlib.seq2seq: the encoder-decoders of chapters 4.7 and 4.8 and their greedy decoding.

Free-running greedy decoding and the teacher-forced pass must agree whenever the decoder
is fed its own output: chapter 4.7 relies on it (a greedy translation is exactly right if
and only if every teacher-forced prediction is right).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from xentlib.datasets import BOS, PAD, UNK
from xentlib.seq2seq import KerasSeq2Seq, Seq2Seq, greedy_decode

SRC, TGT, STEPS = 11, 13, 6


def sources(batch=5, length=4, seed=0):
    return np.random.default_rng(seed).integers(4, SRC, size=(batch, length))


def teacher_forced_argmax(logits_of, x, generated):
    y_in = np.concatenate([np.full((len(x), 1), BOS), generated[:, :-1]], axis=1)
    return np.asarray(logits_of(x, y_in)).argmax(axis=-1)


def test_torch_greedy_is_the_teacher_forced_argmax_of_its_own_output():
    torch.manual_seed(0)
    net = Seq2Seq(SRC, TGT, emb=8, hidden=16)
    x = sources()
    generated = net.greedy(x, steps=STEPS)
    assert generated.shape == (5, STEPS) and generated.dtype == np.int64
    with torch.no_grad():
        again = teacher_forced_argmax(
            lambda a, b: net(torch.as_tensor(a), torch.as_tensor(b)).numpy(), x, generated)
    np.testing.assert_array_equal(again, generated)


def test_keras_greedy_is_the_teacher_forced_argmax_of_its_own_output():
    import keras
    keras.utils.set_random_seed(0)
    s2s = KerasSeq2Seq(SRC, TGT, emb=8, hidden=16)
    x = sources()
    generated = s2s.greedy(x, steps=STEPS)
    again = teacher_forced_argmax(lambda a, b: s2s.model([a, b]), x, generated)
    np.testing.assert_array_equal(again, generated)


def test_banned_tokens_are_never_emitted():
    torch.manual_seed(1)
    net = Seq2Seq(SRC, TGT, emb=8, hidden=16)
    with torch.no_grad():
        net.out.bias[[PAD, BOS, UNK]] = 100.0          # the model's favourites, banned
    generated = net.greedy(sources(), steps=STEPS, banned=[PAD, BOS, UNK])
    assert not np.isin(generated, [PAD, BOS, UNK]).any()


def test_greedy_decode_feeds_back_its_tokens_and_keeps_the_state():
    seen = []

    def step(tokens, state):
        seen.append(tokens[:, 0].tolist())
        return np.eye(TGT)[(tokens + state) % TGT], state

    out = greedy_decode(step, 2, 2, steps=3)
    assert seen == [[BOS, BOS], [BOS + 2] * 2, [BOS + 4] * 2]
    assert out.tolist() == [[BOS + 2, BOS + 4, BOS + 6]] * 2


@pytest.mark.parametrize("steps", [0, -1, 2.0, True])
def test_greedy_decode_rejects_a_bad_number_of_steps(steps):
    with pytest.raises(ValueError, match="^steps must be a positive integer"):
        greedy_decode(lambda t, s: (np.zeros((1, 1, 3)), s), None, 1, steps=steps)
