"""xentlib.exercises.check: accepts correct implementations, rejects buggy ones with a useful message."""
import numpy as np
import pytest

from xentlib import numpy as ref
from xentlib._docs import FUNCTIONS
from xentlib.exercises import cases, check, names


def test_every_reference_function_has_cases():
    assert names() == list(ref.__all__)


def test_the_cases_are_the_function_tables():
    for name, f in FUNCTIONS.items():
        assert [note for *_, note in cases(name)] == [c.note for c in f.exercises()], name


@pytest.mark.parametrize("name", ref.__all__)
def test_reference_passes_its_own_check(name, capsys):
    check(getattr(ref, name), name)
    out = capsys.readouterr().out
    n = len(cases(name))
    assert out == f"✓ {name}: matches xentlib.numpy.{name} on {n} inputs\n"


@pytest.mark.parametrize("name", ref.__all__)
def test_cases_are_deterministic(name):
    a, b = cases(name), cases(name)
    for (args1, kw1, note1), (args2, kw2, note2) in zip(a, b):
        assert note1 == note2 and kw1.keys() == kw2.keys()
        for x, y in zip(args1, args2):
            if isinstance(x, np.ndarray):
                np.testing.assert_array_equal(x, y)


# ---- correct reader implementations (no keyword options) -------------------------

def my_entropy(p):
    p = np.asarray(p)
    safe = np.where(p > 0, p, 1.0)
    return -np.sum(p * np.log(safe), axis=-1)


def my_cross_entropy(p, q):
    p, q = np.asarray(p), np.asarray(q)
    with np.errstate(divide="ignore"):
        return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, q, 1.0)), 0.0), axis=-1)


def my_logsumexp(z):
    m = np.max(z, axis=-1, keepdims=True)
    return (m + np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True)))[..., 0]


def my_log_softmax(z, axis=-1):
    m = np.max(z, axis=axis, keepdims=True)
    return z - m - np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True))


def my_sigmoid_grad(y_true, logits):
    return 0.5 * (1 + np.tanh(logits / 2)) - y_true


@pytest.mark.parametrize("fn, name, skipped", [
    (my_entropy, "entropy", "axis, base"),
    (my_cross_entropy, "cross_entropy", "axis, base"),
    (my_logsumexp, "logsumexp", "axis, keepdims"),
    (my_log_softmax, "log_softmax", None),
    (my_sigmoid_grad, "sigmoid_cross_entropy_grad", None),
])
def test_correct_implementations_pass(fn, name, skipped, capsys):
    check(fn, name)
    out = capsys.readouterr().out
    assert out.startswith(f"✓ {name}: matches xentlib.numpy.{name} on ")
    assert out.count("\n") == 1
    if skipped:
        assert f"need the keyword(s) {skipped})" in out
    else:
        assert "not tried" not in out


def test_output_is_deterministic(capsys):
    check(my_entropy, "entropy")
    first = capsys.readouterr().out
    check(my_entropy, "entropy")
    assert capsys.readouterr().out == first


# ---- buggy implementations: each caught, with the input that shows the bug ------------

def naive_entropy(p):                 # 0 log 0 = nan
    return -np.sum(p * np.log(p), axis=-1)


def entropy_sum_all(p):               # sums over the batch too
    p = np.asarray(p)
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0))


def entropy_in_bits(p):               # wrong unit
    return my_entropy(p) / np.log(2)


def naive_logsumexp(z):               # overflows
    return np.log(np.sum(np.exp(z), axis=-1))


def swapped_cross_entropy(p, q):      # argument order
    return my_cross_entropy(q, p)


def positive_log_softmax(z):          # sign error
    return -my_log_softmax(z)


def crashing_softmax(z):
    raise RuntimeError("not implemented yet")


def list_softmax(z):                  # returns something that is not numbers
    return "softmax"


def cce_no_mean(y_true, y_pred):      # per-example losses instead of the mean
    return -np.sum(y_true * np.log(np.where(y_true > 0, y_pred, 1)), axis=-1)


@pytest.mark.parametrize("fn, name, message", [
    (naive_entropy, "entropy", "wrong value on input 3 of 8 (one-hot: 0 log 0 counts as 0)"),
    (entropy_sum_all, "entropy", "wrong shape: expected (3,), got () on input 7 of 8"),
    (entropy_in_bits, "entropy", "wrong value on input 1 of 8 (random distribution)"),
    (naive_logsumexp, "logsumexp", "wrong value on input 3 of 6 (huge logits"),
    (swapped_cross_entropy, "cross_entropy", "wrong value on input 1 of 7 (the seeds' P and Q)"),
    (positive_log_softmax, "log_softmax", "wrong value on input 1 of 6"),
    (crashing_softmax, "softmax", "raised RuntimeError on input 1 of 6"),
    (list_softmax, "softmax", "returned str, not numbers"),
    (cce_no_mean, "categorical_cross_entropy", "wrong shape: expected (), got (1,) on input 1 of 5"),
])
def test_buggy_implementations_fail(fn, name, message):
    with pytest.raises(AssertionError) as info:
        check(fn, name)
    text = str(info.value)
    assert text.startswith(f"{name}: ")
    assert message in text
    if "wrong value" in text:
        assert "\n  call:     " in text and "\n  expected: " in text and "\n  got:      " in text


def test_no_warnings_leak(recwarn):
    with pytest.raises(AssertionError):
        check(naive_entropy, "entropy")
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_bad_arguments():
    with pytest.raises(ValueError, match="name must be one of"):
        check(my_entropy, "entropie")
    with pytest.raises(TypeError, match="fn must be a function"):
        check(3, "entropy")
    with pytest.raises(ValueError, match="backend must be"):
        check(my_entropy, "entropy", backend="jax")
    with pytest.raises(AssertionError, match="raised TypeError on input 1 of 8"):
        check(lambda: 0.0, "entropy")


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_framework_backends(backend, capsys):
    """Readers' framework code gets tensors; every case runs on each backend's own function."""
    xl = pytest.importorskip(f"xentlib.{backend}")
    for name in xl.__all__:
        if name in names():
            check(getattr(xl, name), name, backend=backend)
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("✓ ") and f"xentlib.{backend}." in line for line in lines)


def test_torch_reader_function():
    torch = pytest.importorskip("torch")

    def my_entropy(p):
        return -torch.special.xlogy(p, p).sum(-1)
    check(my_entropy, "entropy", backend="torch")

    def naive(p):
        return -(p * torch.log(p)).sum(-1)
    with pytest.raises(AssertionError, match="one-hot: 0 log 0 counts as 0"):
        check(naive, "entropy", backend="torch")
