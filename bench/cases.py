"""One benchmark case per process: ``python bench/cases.py '<json spec>'`` prints one JSON line.

A fresh process per case makes the peak-memory reading clean. Method: the inputs
are built, the kernel's peak-RSS counter is reset (``echo 5 >
/proc/self/clear_refs``), the current RSS is read as the baseline, the first
forward+backward step runs, and ``VmHWM - baseline`` is the step's extra peak
memory (inputs excluded, gradients and every temporary included; each row also
gives ``gradient_bytes``, the float32 gradients of hidden and weight that every
method returns, so that the temporaries are the difference); TensorFlow's
is read from its own allocator instead (``tf_first_step``). The first
step is used because TensorFlow's CPU allocator keeps freed memory, so a later
step would find its buffers already counted in the baseline; ``run.py`` also
sets ``MALLOC_MMAP_THRESHOLD_`` so glibc returns large buffers at once. Times are
the median of ``repeats`` steps after that first one, one thread per framework.
"""
from __future__ import annotations

import gc
import json
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def first_step(step):
    """Run ``step`` once; return (peak RSS during it - RSS before it, seconds)."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status("VmRSS")
    t0 = time.perf_counter()
    step()
    seconds = time.perf_counter() - t0
    return _status("VmHWM") - base, seconds


def tf_first_step(tf, step):
    """As ``first_step``, the memory read from TensorFlow's CPU allocator (its peak bytes in use
    during the step minus those in use before it).

    TensorFlow keeps the buffers it frees (those of building the inputs among them) and hands
    them out again, so the step's tensors need not raise the process's RSS: its peak RSS
    missed most of the naive form's N x V logits.
    """
    gc.collect()
    tf.config.experimental.reset_memory_stats("CPU:0")
    base = tf.config.experimental.get_memory_info("CPU:0")["current"]
    t0 = time.perf_counter()
    step()
    seconds = time.perf_counter() - t0
    return tf.config.experimental.get_memory_info("CPU:0")["peak"] - base, seconds


def median_seconds(step, repeats, warmup=True):
    """(median wall seconds, the wall seconds, median CPU seconds of this process).

    CPU time counts only this process's own work (all its threads), so on a shared,
    loaded machine it is the steadier of the two; wall time is what a user waits.
    """
    for _ in range(int(warmup)):  # True: one call; an int: that many
        step()
    out, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        out.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(out), out, statistics.median(cpu)


#: Untimed calls before the timed ones of a loss: xentlib.tensorflow's losses run eagerly
#: for the first three calls with one signature, trace their graph on the fourth and run it
#: from then on (its first runs, and the first backward through it, are still slow): a
#: training loop's steady state is what is timed, as for the built-ins.
WARMUP_CALLS = 6


# ---- PyTorch ------------------------------------------------------------------

def _torch_setup(threads=1):
    import torch
    torch.set_num_threads(threads)
    return torch


def _softmax_once_ce(torch):
    """Cross-entropy from logits that computes the softmax once and reuses it in place
    for the gradient (computed in the forward pass): the memory floor for comparison."""

    class SoftmaxOnce(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z, y):
            e = z - z.amax(dim=1, keepdim=True)
            z_y = e.gather(1, y[:, None])[:, 0]
            e.exp_()
            s = e.sum(dim=1)
            loss = (s.log() - z_y).mean()
            e.mul_((1.0 / (s * len(y)))[:, None])
            e.scatter_add_(1, y[:, None], torch.full((len(y), 1), -1.0 / len(y)))
            ctx.save_for_backward(e)
            return loss

        @staticmethod
        def backward(ctx, g):
            (e,) = ctx.saved_tensors
            return e.mul_(g), None

    return SoftmaxOnce.apply


def torch_losses(spec):
    """Plain losses from logits: xentlib.torch vs torch built-ins, time only.

    ``spec["sizes"]`` holds logits shapes, ``[N, V]`` or a sequence batch ``[B, T, V]``
    (the built-ins get the flattened ``(B T, V)`` view, xentlib the batch as it is).
    """
    rows = []
    for shape in spec["sizes"]:
        rows += _torch_losses(dict(spec, shape=shape))
    return rows


def _torch_losses(spec):
    torch = _torch_setup()
    import torch.nn.functional as F
    shape = tuple(spec["shape"])
    v, n = shape[-1], math.prod(shape[:-1])
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(*shape, generator=g) * 2
    y = torch.randint(0, v, shape[:-1], generator=g)
    y_ign = y.clone()
    y_ign[torch.rand(shape[:-1], generator=g) < 0.1] = -100
    onehot = F.one_hot(y, v).float()
    multi = (torch.rand(*shape, generator=g) < 0.01).float()
    flat_y, flat_ign, flat_onehot = y.reshape(-1), y_ign.reshape(-1), onehot.reshape(-1, v)

    def flat(z):
        return z.reshape(-1, v)

    try:
        from xentlib import torch as xl
        xl_error = None
    except Exception as exc:  # the backend may not exist yet
        xl, xl_error = None, f"{type(exc).__name__}: {exc}"
    once = _softmax_once_ce(torch)
    cases = {
        "sparse CE": (lambda z: F.cross_entropy(flat(z), flat_y),
                      xl and (lambda z: xl.sparse_categorical_cross_entropy(y, z, from_logits=True))),
        "sparse CE, smoothing 0.1": (
            lambda z: F.cross_entropy(flat(z), flat_y, label_smoothing=0.1),
            xl and (lambda z: xl.sparse_categorical_cross_entropy(
                y, z, from_logits=True, label_smoothing=0.1))),
        "sparse CE, 10% ignored": (
            lambda z: F.cross_entropy(flat(z), flat_ign, ignore_index=-100),
            xl and (lambda z: xl.sparse_categorical_cross_entropy(
                y_ign, z, from_logits=True, ignore_index=-100))),
        "categorical CE (one-hot)": (
            lambda z: F.cross_entropy(flat(z), flat_onehot),
            xl and (lambda z: xl.categorical_cross_entropy(onehot, z, from_logits=True))),
        "binary CE (multi-label)": (
            lambda z: F.binary_cross_entropy_with_logits(z, multi),
            xl and (lambda z: xl.binary_cross_entropy(multi, z, from_logits=True))),
        "softmax-once CE (bench reference)": (lambda z: F.cross_entropy(flat(z), flat_y),
                                              lambda z: once(flat(z), flat_y)),
    }
    rows = []
    for name, (builtin, ours) in cases.items():
        row = {"framework": "torch", "loss": name, "n": n, "v": v, "shape": list(shape)}
        for label, fn in (("builtin", builtin), ("xentlib", ours)):
            if fn is None:
                row[label + "_error"] = xl_error
                continue
            try:
                def fwd(fn=fn):
                    with torch.no_grad():
                        fn(z0)

                def fwd_bwd(fn=fn):
                    z = z0.clone().requires_grad_()
                    fn(z).backward()

                row[label + "_fwd_s"], _, row[label + "_fwd_cpu_s"] = median_seconds(
                    fwd, spec["repeats"], WARMUP_CALLS)
                row[label + "_fwdbwd_s"], _, row[label + "_fwdbwd_cpu_s"] = median_seconds(
                    fwd_bwd, spec["repeats"], WARMUP_CALLS)
            except Exception as exc:
                row[label + "_error"] = f"{type(exc).__name__}: {exc}"[:200]
        rows.append(row)
    # the clone in fwd_bwd is part of both sides; measure it to subtract in the report
    rows.append({"framework": "torch", "loss": "clone of logits (overhead in fwd+bwd)", "n": n,
                 "v": v, "shape": list(shape), "clone_s": median_seconds(lambda: z0.clone(), spec["repeats"])[0]})
    return rows


def torch_linear(spec):
    """One linear-CE method at each size in ``spec["vs"]`` (increasing): peak extra memory
    of the first step at that size and the median fwd+bwd time.

    PyTorch's CPU allocator returns large buffers to the system when they are freed
    (glibc with the fixed mmap threshold set by run.py), so the sizes can share a
    process; TensorFlow's cannot (one process per size there).
    """
    threads = spec.get("threads", 1)
    torch = _torch_setup(threads)
    import torch.nn.functional as F

    from xentlib import torch as xl
    n, d, method = spec["n"], spec["d"], spec["method"]

    def naive(h, w, y):
        return F.cross_entropy(F.linear(h, w), y)

    def builtin(options):
        return lambda h, w, y: F.linear_cross_entropy(h, w, y, options=options)

    if method == "naive":
        fn = naive
    elif method == "xentlib":
        fn = _with_chunk(xl.linear_cross_entropy, spec)
    elif method == "torch.nn.functional.linear_cross_entropy":
        fn = builtin(torch.nn.LinearCrossEntropyOptions())
    elif method == "torch.nn.functional.linear_cross_entropy (tuned)":
        fn = builtin(torch.nn.LinearCrossEntropyOptions(chunking_method=None,
                                                        batch_chunk_size=spec["tuned_rows"]))
    elif method == "torch.compile(naive)":
        fn = torch.compile(naive)
    else:
        raise ValueError(method)
    rows = []
    for v in spec["vs"]:
        g = torch.Generator().manual_seed(0)
        h = (torch.randn(n, d, generator=g)).requires_grad_()
        w = (torch.randn(v, d, generator=g) / d ** 0.5).requires_grad_()
        y = torch.randint(0, v, (n,), generator=g)

        def step(h=h, w=w, y=y):
            h.grad = w.grad = None
            fn(h, w, y).backward()
            h.grad = w.grad = None

        mem, first = first_step(step)
        seconds, _, cpu = median_seconds(step, spec["repeats"], warmup=False)
        with torch.no_grad():
            value = float(fn(h, w, y))
        rows.append({"framework": "torch", "method": _label(method, spec), "n": n, "d": d, "v": v,
                     "threads": threads, "chunk_size": spec.get("chunk_size"),
                     "peak_extra_bytes": mem, "gradient_bytes": 4 * (n + v) * d,
                     "fwdbwd_s": seconds, "fwdbwd_cpu_s": cpu, "first_call_s": first,
                     "loss": value})
        del h, w, y
    return rows


def _with_chunk(linear_cross_entropy, spec):
    """xentlib's linear CE with ``spec["chunk_size"]`` rows per chunk (its default if absent)."""
    chunk = spec.get("chunk_size")
    return lambda h, w, y: linear_cross_entropy(h, w, y, chunk_size=chunk)


def _label(method, spec):
    chunk = spec.get("chunk_size")
    return method if chunk is None else f"{method}, chunk_size={chunk}"


# ---- TensorFlow ----------------------------------------------------------------

def _tf_setup(threads=1):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf


def tf_losses(spec):
    """Plain losses from logits: xentlib.tensorflow vs tf.nn built-ins, time only
    (shapes as in :func:`torch_losses`)."""
    rows = []
    for shape in spec["sizes"]:
        rows += _tf_losses(dict(spec, shape=shape))
    return rows


def _tf_losses(spec):
    tf = _tf_setup()
    shape = tuple(spec["shape"])
    v, n = shape[-1], math.prod(shape[:-1])
    z0 = tf.random.stateless_normal(shape, seed=(0, 1)) * 2
    y = tf.random.stateless_uniform(shape[:-1], seed=(0, 2), maxval=v, dtype=tf.int32)
    ign = tf.random.stateless_uniform(shape[:-1], seed=(0, 3)) < 0.1
    y_ign = tf.where(ign, -100, y)
    mask = tf.cast(~ign, tf.float32)
    onehot = tf.one_hot(y, v)
    smooth = onehot * 0.9 + 0.1 / v
    multi = tf.cast(tf.random.stateless_uniform(shape, seed=(0, 4)) < 0.01, tf.float32)
    try:
        from xentlib import tensorflow as xl
        xl_error = None
    except Exception as exc:
        xl, xl_error = None, f"{type(exc).__name__}: {exc}"
    nn = tf.nn
    cases = {
        "sparse CE": (lambda z: tf.reduce_mean(nn.sparse_softmax_cross_entropy_with_logits(y, z)),
                      xl and (lambda z: xl.sparse_categorical_cross_entropy(
                          y, z, from_logits=True))),
        "sparse CE, smoothing 0.1": (
            lambda z: tf.reduce_mean(nn.softmax_cross_entropy_with_logits(smooth, z)),
            xl and (lambda z: xl.sparse_categorical_cross_entropy(
                y, z, from_logits=True, label_smoothing=0.1))),
        "sparse CE, 10% ignored": (
            lambda z: tf.reduce_sum(nn.sparse_softmax_cross_entropy_with_logits(
                tf.where(ign, 0, y), z) * mask) / tf.reduce_sum(mask),
            xl and (lambda z: xl.sparse_categorical_cross_entropy(
                y_ign, z, from_logits=True, ignore_index=-100))),
        "categorical CE (one-hot)": (
            lambda z: tf.reduce_mean(nn.softmax_cross_entropy_with_logits(onehot, z)),
            xl and (lambda z: xl.categorical_cross_entropy(onehot, z, from_logits=True))),
        "binary CE (multi-label)": (
            lambda z: tf.reduce_mean(nn.sigmoid_cross_entropy_with_logits(multi, z)),
            xl and (lambda z: xl.binary_cross_entropy(multi, z, from_logits=True))),
    }
    rows = []
    for name, (builtin, ours) in cases.items():
        row = {"framework": "tensorflow", "loss": name, "n": n, "v": v, "shape": list(shape)}
        for label, fn in (("builtin", builtin), ("xentlib", ours)):
            if fn is None:
                row[label + "_error"] = xl_error
                continue
            try:
                def fwd(fn=fn):
                    _computed(tf, fn(z0))

                def fwd_bwd(fn=fn):
                    with tf.GradientTape() as tape:
                        tape.watch(z0)
                        loss = fn(z0)
                    _computed(tf, tape.gradient(loss, z0))

                row[label + "_fwd_s"], _, row[label + "_fwd_cpu_s"] = median_seconds(
                    fwd, spec["repeats"], WARMUP_CALLS)
                row[label + "_fwdbwd_s"], _, row[label + "_fwdbwd_cpu_s"] = median_seconds(
                    fwd_bwd, spec["repeats"], WARMUP_CALLS)
            except Exception as exc:
                row[label + "_error"] = f"{type(exc).__name__}: {exc}"[:200]
        rows.append(row)
    return rows


def _computed(tf, *tensors):
    """Read one element of each tensor: the step's work is done, nothing is copied.

    ``.numpy()`` would copy the whole tensor, adding a V x d buffer to the linear CE's
    memory reading and an N x V copy to the losses' time, the same for both forms, which
    drew their ratios towards 1.
    """
    for t in tensors:
        tf.reshape(t, [-1])[:1].numpy()


def tf_linear(spec):
    threads = spec.get("threads", 1)
    tf = _tf_setup(threads)
    from xentlib import tensorflow as xl
    n, d, v, method = spec["n"], spec["d"], spec["v"], spec["method"]
    h = tf.random.stateless_normal((n, d), seed=(1, 1))
    w = tf.random.stateless_normal((v, d), seed=(1, 2)) / d ** 0.5
    y = tf.random.stateless_uniform((n,), seed=(1, 3), maxval=v, dtype=tf.int32)
    if method == "naive":
        def fn(h, w, y):
            z = tf.matmul(h, w, transpose_b=True)
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, z))
    elif method == "xentlib":
        fn = _with_chunk(xl.linear_cross_entropy, spec)
    else:
        raise ValueError(method)

    def step():
        with tf.GradientTape() as tape:
            tape.watch([h, w])
            loss = fn(h, w, y)
        _computed(tf, *tape.gradient(loss, [h, w]))

    mem, first = tf_first_step(tf, step)
    seconds, _, cpu = median_seconds(step, spec["repeats"], warmup=False)
    return [{"framework": "tensorflow", "method": _label(method, spec), "n": n, "d": d, "v": v,
             "threads": threads, "chunk_size": spec.get("chunk_size"), "peak_extra_bytes": mem,
             "gradient_bytes": 4 * (n + v) * d, "fwdbwd_s": seconds, "fwdbwd_cpu_s": cpu,
             "first_call_s": first, "loss": float(fn(h, w, y))}]


# ---- the machine ---------------------------------------------------------------

def machine(spec):
    """Memory bandwidth (copy of a 256 MiB float32 array) and matmul throughput, one thread.

    The best of several runs: a limit is what the machine can do when not disturbed.
    """
    torch = _torch_setup()
    a = torch.ones(64 * 1024 * 1024)
    b = torch.empty_like(a)
    best = lambda fn, k: min(median_seconds(fn, k)[1])
    copy_s = best(lambda: b.copy_(a), 7)
    read_s = best(lambda: a.sum(), 7)
    n, d, v = spec["n"], spec["d"], spec["v"]
    h, w = torch.randn(n, d), torch.randn(v, d)
    mm_s = best(lambda: h @ w.T, 7)
    sq = torch.randn(1024, 1024)
    sq_s = best(lambda: sq @ sq, 5)
    nbytes = a.numel() * 4
    return [{"copy_GBps": 2 * nbytes / copy_s / 1e9, "read_GBps": nbytes / read_s / 1e9,
             "matmul_GFLOPs": 2 * n * d * v / mm_s / 1e9, "matmul_shape": [n, d, v],
             "matmul_square_GFLOPs": 2 * 1024 ** 3 / sq_s / 1e9, "statistic": "best of 7"}]


CASES = {"torch_losses": torch_losses, "torch_linear": torch_linear, "tf_losses": tf_losses,
         "tf_linear": tf_linear, "machine": machine}

if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    print("RESULT " + json.dumps(CASES[spec["case"]](spec)), flush=True)
