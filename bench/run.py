"""`make bench`: xentlib against the frameworks' built-ins; writes bench/results/results.{json,md}.

Every case runs in a fresh process (``bench/cases.py``), one thread per framework,
so that peak memory can be read from the kernel's peak-RSS counter and the cases do
not disturb each other. Times are medians of repeated steps; ratios compare two
methods measured in the same run on the same inputs. ``--quick`` runs tiny sizes
(a smoke test of the script, a few seconds per case); the committed results come
from a plain ``make bench``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGED_RESULTS = os.path.join(HERE, "..", "xentlib", "data", "benchmark_results.json")
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from cases import WARMUP_CALLS  # noqa: E402  (bench/ is on the path: the script's own folder)


def grid_rows(d, v, flops_budget=1 << 35):
    """N for the (d, V) grid: about 2**35 N d V (one forward+backward is 6 N d V flops, a few
    seconds on two cores), between 256 and 2048 rows; the naive logits then fit in memory."""
    return max(256, min(2048, flops_budget // (d * v)))


# loss_sizes: logits shapes, (N, V) or a (B, T, V) sequence batch. linear_*: the d = 64
# table (one thread). grid, two threads, every method in the same run: torch's own fused
# loss and torch.compile at `shapes`; naive and xentlib at every (d, V) of d in {64, 256,
# 1024, 4096}, V in {32k, 128k, 256k} (N from grid_rows); xentlib alone where the naive
# logits would not fit (N = 8192, V = 256k: 25 GiB of N x V buffers).
GRID_PAIRS = [(grid_rows(d, v), d, v) for d in (64, 256, 1024, 4096)
              for v in (32768, 131072, 262144)]
FULL = dict(loss_sizes=[(4096, 10), (128, 32768), (4, 128, 8192)], loss_repeats=7,
            linear_n=1024, linear_d=64, linear_vs=[32768, 65536, 131072], linear_repeats=3,
            slow_repeats=2, slow_vs=[32768, 65536], compile_vs=[32768], timeout=400,
            grid=dict(threads=2, repeats=2, shapes=[(2048, 1024, 32768)],
                      pairs=[p for p in GRID_PAIRS if p != (2048, 1024, 32768)],
                      xentlib_only=[(8192, 64, 262144)], compile=True, timeout=900,
                      chunk_sweep=dict(shape=(256, 1024, 131072), rows=[64, 16])))
QUICK = dict(loss_sizes=[(64, 10), (64, 512), (2, 8, 256)], loss_repeats=2, linear_n=64,
             linear_d=16, linear_vs=[2048, 4096], linear_repeats=2, slow_repeats=1,
             slow_vs=[2048], compile_vs=[], timeout=300,
             grid=dict(threads=2, repeats=1, shapes=[(128, 64, 2048)], pairs=[(64, 32, 4096)],
                       xentlib_only=[(64, 16, 16384)], compile=False, timeout=300,
                       chunk_sweep=dict(shape=(64, 32, 4096), rows=[16, 4])))
TORCH_METHODS = ["naive", "xentlib", "torch.nn.functional.linear_cross_entropy",
                 "torch.compile(naive)"]
TUNED = "torch.nn.functional.linear_cross_entropy (tuned)"
TF_METHODS = ["naive", "xentlib"]


def default_rows(n, d, v, framework="torch"):
    """Rows per chunk of xentlib's linear CE by default in ``framework`` (also torch's
    batch_chunk_size for the tuned run)."""
    if framework == "torch":
        from xentlib import torch as xl
    else:
        from xentlib import tensorflow as xl
    return xl.linear_cross_entropy.default_chunk_size(n, v, d)


def run_case(spec, timeout):
    threads = str(spec.get("threads", 1))
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
               MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0",
               TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="1", PYTHONWARNINGS="ignore")
    label = " ".join(f"{k}={v}" for k, v in spec.items() if k not in ("repeats", "case"))
    label = f"{spec['case']} {label}"
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, os.path.join(HERE, "cases.py"), json.dumps(spec)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        print(f"  {label}: timed out after {timeout} s", flush=True)
        return [dict(spec, error=f"timed out after {timeout} s")]
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            print(f"  {label}: {time.perf_counter() - t0:.0f} s", flush=True)
            return json.loads(line[len("RESULT "):])
    if proc.returncode < 0:  # a signal: 9 is what the kernel's out-of-memory killer sends
        why = f"killed by signal {-proc.returncode}" + (" (out of memory)" if proc.returncode == -9
                                                        else "")
    else:
        why = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])[-300:]
    print(f"  {label}: failed: {why}", flush=True)
    framework = "tensorflow" if spec["case"].startswith("tf_") else "torch"
    return [dict(spec, framework=framework, error=why)]


def accuracy_check():
    """float32 linear CE vs the float64 computation, several chunk sizes, all backends."""
    import numpy as np
    import tensorflow as tf
    import torch

    from xentlib import numpy as xnp
    from xentlib import tensorflow as xtf
    from xentlib import torch as xtorch
    lce_np, lce_tf, lce_torch = (m.linear_cross_entropy for m in (xnp, xtf, xtorch))
    rng = np.random.default_rng(0)
    n, d, v = 256, 64, 8192
    h = rng.normal(size=(n, d)).astype(np.float32)
    w = (rng.normal(size=(v, d)) / 8).astype(np.float32)
    y = rng.integers(0, v, n)
    ref = float(xnp.sparse_categorical_cross_entropy(
        y, h.astype(np.float64) @ w.astype(np.float64).T, from_logits=True))
    worst = 0.0
    for chunk in (1, 3, 64, 255, None):
        for val in (lce_np(h, w, y, chunk_size=chunk),
                    lce_torch(torch.tensor(h), torch.tensor(w), torch.tensor(y), chunk_size=chunk),
                    lce_tf(tf.constant(h), tf.constant(w), tf.constant(y), chunk_size=chunk)):
            worst = max(worst, abs(float(val) - ref) / abs(ref))
    return {"n": n, "d": d, "v": v, "chunks": [1, 3, 64, 255, "default"],
            "max_relative_error": worst}


def physical(machine, linear, losses):
    """Bytes of logits moved, and where measured times sit against this machine's limits."""
    bw = machine["copy_GBps"] * 1e9
    # the limit: the best throughput measured (a square 1024^3 matmul), not the skinny shape
    flops = max(machine["matmul_GFLOPs"], machine.get("matmul_square_GFLOPs", 0)) * 1e9
    out = {"bandwidth_GBps": machine["copy_GBps"], "matmul_GFLOPs": flops / 1e9,
           "matmul_skinny_GFLOPs": machine["matmul_GFLOPs"],
           "from_logits": [], "linear": []}
    for row in losses:
        if row.get("loss") == "sparse CE" and "builtin_fwdbwd_s" in row:
            logits = row["n"] * row["v"]
            floor_ns = 8 / bw * 1e9  # read the logits once, write the gradient once
            entry = {"framework": row["framework"], "n": row["n"], "v": row["v"],
                     "floor_ns_per_logit": floor_ns,
                     "builtin_ns_per_logit": row["builtin_fwdbwd_s"] / logits * 1e9}
            if "xentlib_fwdbwd_s" in row:
                entry["xentlib_ns_per_logit"] = row["xentlib_fwdbwd_s"] / logits * 1e9
            out["from_logits"].append(entry)
    for row in linear:
        if row.get("method") not in ("naive", "xentlib") or "fwdbwd_s" not in row:
            continue
        n, d, v = row["n"], row["d"], row["v"]
        flop = 3 * 2 * n * d * v  # logits, grad of hidden, grad of weight
        naive_bytes = 9 * 4 * n * v  # ~9 full passes over the float32 (N, V) logits
        # fused: chunk logits stay in cache when they fit; weight read twice and
        # its gradient read+written once per chunk (the framework's default chunk)
        chunks = -(-n // default_rows(n, d, v, row["framework"]))
        fused_bytes = chunks * 4 * 4 * v * d
        moved = naive_bytes if row["method"] == "naive" else fused_bytes
        out["linear"].append({
            "framework": row["framework"], "method": row["method"], "n": n, "d": d, "v": v,
            "logit_bytes_moved_estimate": moved, "matmul_s_at_peak": flop / flops,
            "memory_s_at_bandwidth": moved / bw, "measured_s": row["fwdbwd_s"]})
    return out


def headline_ratios(losses, linear, accuracy):
    """The headline ratios of the run (``results["ratios"]``): one row each."""
    def ratios(key_a, key_b, rows):
        return [r[key_a] / r[key_b] for r in rows if key_a in r and key_b in r]

    res = []
    for fw in ("torch", "tensorflow"):
        plain = [r for r in losses if r["framework"] == fw and "xentlib" not in r["loss"]
                 and "softmax-once" not in r["loss"] and "clone" not in r["loss"]]
        # CPU time where measured: steadier than wall time on a shared machine
        cpu = "_cpu" if any("builtin_fwd_cpu_s" in r for r in plain) else ""
        fwd = ratios(f"xentlib_fwd{cpu}_s", f"builtin_fwd{cpu}_s", plain)
        fb = ratios(f"xentlib_fwdbwd{cpu}_s", f"builtin_fwdbwd{cpu}_s", plain)
        if fwd:
            res.append({"comparison": f"{fw}: plain losses from logits, xentlib / built-in "
                                      f"{'CPU ' if cpu else ''}time (best, worst case)",
                        "value": f"fwd {min(fwd):.2f} to {max(fwd):.2f}, "
                                 f"fwd+bwd {min(fb):.2f} to {max(fb):.2f}"})
        for opt in ("sparse CE, smoothing 0.1", "sparse CE, 10% ignored"):
            extra = []
            for r in losses:
                if r["framework"] == fw and r["loss"] == opt:
                    base = next((b for b in losses if b["framework"] == fw and b["n"] == r["n"]
                                 and b["loss"] == "sparse CE"), None)
                    if base and "xentlib_fwdbwd_s" in r and "xentlib_fwdbwd_s" in base:
                        extra.append(r["xentlib_fwdbwd_s"] / base["xentlib_fwdbwd_s"] - 1)
            if extra:
                res.append({"comparison": f"{fw}: xentlib's extra time for "
                                          f"{opt.split(', ')[1]} (fwd+bwd, worst size)",
                            "value": f"{100 * max(extra):+.0f}%"})
    for fw in ("torch", "tensorflow"):
        for v in sorted({r["v"] for r in linear if r.get("framework") == fw}):
            rows = {r["method"]: r for r in linear if r.get("framework") == fw and r["v"] == v
                    and "fwdbwd_s" in r}
            if "naive" not in rows or "xentlib" not in rows:
                continue
            mem = rows["xentlib"]["peak_extra_bytes"] / rows["naive"]["peak_extra_bytes"]
            t = rows["xentlib"]["fwdbwd_s"] / rows["naive"]["fwdbwd_s"]
            cpu = cpu_seconds(rows["xentlib"]) / cpu_seconds(rows["naive"])
            temp = f", temporaries {temporaries(rows['xentlib']) / temporaries(rows['naive']):.3f}x" \
                if "gradient_bytes" in rows["naive"] else ""
            res.append({"comparison": f"{fw}: linear CE at V={v}, xentlib / naive",
                        "value": f"memory {mem:.3f}x{temp}, time {t:.2f}x (CPU {cpu:.2f}x)"})
    res.append({"comparison": "float32 linear CE loss against float64, any chunk size "
                              "(largest relative difference)",
                "value": f"{accuracy['max_relative_error']:.1e}"})
    return res


def rows_label(row):
    """N, or B x T for a sequence batch."""
    return " x ".join(map(str, row.get("shape", [row["n"], row["v"]])[:-1]))


def fmt_bytes(b):
    return f"{b / 2 ** 20:.0f} MiB" if b >= 2 ** 20 else f"{b / 2 ** 10:.0f} KiB"


def markdown(results):
    c = results["conditions"]
    lines = ["# xentlib benchmark results", "",
             f"Run {c['date']} on {c['cpu']} ({c['cores']} cores), {c['python']}, "
             f"torch {c['torch']}, tensorflow {c['tensorflow']}; one thread per framework; "
             f"load average {c['load_before']} before, {c['load_after']} after the run "
             f"(a shared machine: times are noisy, ratios within one run are what counts). "
             f"Wall time of the suite: {c['wall_s']:.0f} s.", "",
             "Method: " + c["method"], "", "## Ratios", "", "| comparison | measured |",
             "|---|---|"]
    for g in results["ratios"]:
        lines.append(f"| {g['comparison']} | {g['value']} |")
    lines += ["", "## Losses from logits (time ratio xentlib / built-in, same inputs, same run)", "",
              "| framework | loss | N (or B x T) | V | built-in fwd ms | ratio fwd | built-in fwd+bwd ms "
              "| ratio fwd+bwd | CPU ratio fwd | CPU ratio fwd+bwd "
              "| ns/logit fwd+bwd (built-in / xentlib) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["losses"]:
        if "builtin_fwd_s" not in r:
            continue
        nv = r["n"] * r["v"]
        if "xentlib_fwd_s" in r:
            rf = f"{r['xentlib_fwd_s'] / r['builtin_fwd_s']:.2f}"
            rb = f"{r['xentlib_fwdbwd_s'] / r['builtin_fwdbwd_s']:.2f}"
            ns = f"{r['builtin_fwdbwd_s'] / nv * 1e9:.1f} / {r['xentlib_fwdbwd_s'] / nv * 1e9:.1f}"
        else:
            rf = rb = "n/a"
            ns = f"{r['builtin_fwdbwd_s'] / nv * 1e9:.1f} / n/a"
        cf = cb = "n/a"
        if "xentlib_fwd_cpu_s" in r and "builtin_fwd_cpu_s" in r:
            cf = f"{r['xentlib_fwd_cpu_s'] / r['builtin_fwd_cpu_s']:.2f}"
            cb = f"{r['xentlib_fwdbwd_cpu_s'] / r['builtin_fwdbwd_cpu_s']:.2f}"
        lines.append(f"| {r['framework']} | {r['loss']} | {rows_label(r)} | {r['v']} | "
                     f"{1e3 * r['builtin_fwd_s']:.1f} | {rf} | {1e3 * r['builtin_fwdbwd_s']:.1f} | "
                     f"{rb} | {cf} | {cb} | {ns} |")
    errs = sorted({r["xentlib_error"] for r in results["losses"] if r.get("xentlib_error")})
    if errs:
        lines += ["", "xentlib backend errors in this run: " + "; ".join(errs)]
    lines += ["", "## Linear cross-entropy (forward+backward for hidden and weight)", "",
              "| framework | method | N | d | V | extra peak memory | time s | memory / naive "
              "| time / naive | CPU time / naive |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["linear"]:
        if "fwdbwd_s" not in r:
            lines.append(f"| {r.get('framework', '')} | {r.get('method')} | {r.get('n')} | "
                         f"{r.get('d')} | {r.get('v')} | failed: {r.get('error', '')[:80]} | | | | |")
            continue
        naive = next((b for b in results["linear"] if b.get("framework") == r["framework"]
                      and b.get("v") == r["v"] and b.get("method") == "naive" and "fwdbwd_s" in b),
                     None)
        mr = tr = cr = ""
        if naive:
            mr = f"{r['peak_extra_bytes'] / naive['peak_extra_bytes']:.3f}"
            tr = f"{r['fwdbwd_s'] / naive['fwdbwd_s']:.2f}"
            cr = f"{cpu_seconds(r) / cpu_seconds(naive):.2f}"
        lines.append(f"| {r['framework']} | {r['method']} | {r['n']} | {r['d']} | {r['v']} | "
                     f"{fmt_bytes(r['peak_extra_bytes'])} | {r['fwdbwd_s']:.2f} | {mr} | {tr} | {cr} |")
    grid = results.get("linear_grid", [])
    if grid:
        lines += ["", "## Linear cross-entropy at larger d (two threads, every method in one run)", "",
                  "Ratios compare methods at the same (N, d, V) in this run; `tuned` is torch's "
                  "`linear_cross_entropy` with `batch_chunk_size` set to xentlib's default chunk. "
                  "CPU s is the process's own CPU time (all its threads): on a shared machine it is "
                  "steadier than the wall time, which includes waiting for a core.", "",
                  "Temporaries are the extra peak memory less the gradients of hidden and weight "
                  "(float32, (N + V) d numbers), which every method returns: what a method holds "
                  "beyond its result.", "",
                  "| framework | method | N | d | V | extra peak memory | temporaries | time s "
                  "| CPU s | memory / naive | temporaries / naive | time / naive | CPU / naive "
                  "| CPU / xentlib |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in grid:
            if "fwdbwd_s" not in r:
                lines.append(f"| {r.get('framework', '')} | {r.get('method')} | {r.get('n')} | "
                             f"{r.get('d')} | {r.get('v')} | failed: {r.get('error', '')[:80]} "
                             f"| | | | | | | | |")
                continue
            naive, ours = same_shape(grid, r, "naive"), same_shape(grid, r, "xentlib")
            mr = f"{r['peak_extra_bytes'] / naive['peak_extra_bytes']:.3f}" if naive else "naive not run"
            has_temp = naive and "gradient_bytes" in r and "gradient_bytes" in naive
            te = fmt_bytes(temporaries(r)) if "gradient_bytes" in r else ""
            tm = f"{temporaries(r) / temporaries(naive):.3f}" if has_temp else ""
            tr = f"{r['fwdbwd_s'] / naive['fwdbwd_s']:.2f}" if naive else ""
            cr = f"{cpu_seconds(r) / cpu_seconds(naive):.2f}" if naive else ""
            xr = f"{cpu_seconds(r) / cpu_seconds(ours):.2f}" if ours else ""
            lines.append(f"| {r['framework']} | {r['method']} | {r['n']} | {r['d']} | {r['v']} | "
                         f"{fmt_bytes(r['peak_extra_bytes'])} | {te} | {r['fwdbwd_s']:.2f} | "
                         f"{cpu_seconds(r):.2f} | {mr} | {tm} | {tr} | {cr} | {xr} |")
        missing = results.get("linear_grid_not_run", [])
        if missing:
            lines += ["", "Not run here (time): (N, d, V) = " +
                      ", ".join(f"({n}, {d}, {v})" for n, d, v in missing) + "."]
    lines += ["", "![extra peak memory against V](linear_memory.png)"]
    firsts = [r for r in results["linear"] + grid if r.get("method") == "torch.compile(naive)"
              and "first_call_s" in r]
    for r in firsts:
        lines += ["", f"torch.compile(naive), d={r['d']}, V={r['v']}: first call (compilation included) "
                      f"{r['first_call_s']:.1f} s; TorchInductor caches compiled code under /tmp, "
                      f"so a warm cache makes this much shorter than a cold compile (~100 s here)."]
    p = results["physical"]
    lines += ["", "## The physical limit", "",
              f"Measured here, one thread, best of 7 runs: memory bandwidth {p['bandwidth_GBps']:.1f} GB/s "
              f"(copy of 256 MiB), matmul {p['matmul_GFLOPs']:.1f} GFLOP/s (1024 x 1024 by "
              f"1024 x 1024; the (N x d) by (d x V) product of the linear cases with d = 64 reached "
              f"{p['matmul_skinny_GFLOPs']:.1f} GFLOP/s).", ""]
    for e in p["from_logits"]:
        x = f", xentlib {e['xentlib_ns_per_logit']:.1f}" if "xentlib_ns_per_logit" in e else ""
        lines.append(f"- {e['framework']} sparse CE from logits, N={e['n']}, V={e['v']}: "
                     f"built-in {e['builtin_ns_per_logit']:.1f} ns/logit{x}; the memory floor "
                     f"(read each logit once, write its gradient once, 8 bytes) is "
                     f"{e['floor_ns_per_logit']:.1f} ns/logit at the measured bandwidth.")
    for e in p["linear"]:
        lines.append(f"- {e['framework']} {e['method']} V={e['v']}: about "
                     f"{fmt_bytes(e['logit_bytes_moved_estimate'])} of logit/weight traffic "
                     f"({e['memory_s_at_bandwidth']:.2f} s at the bandwidth), matmuls "
                     f"{e['matmul_s_at_peak']:.2f} s at the measured throughput; measured "
                     f"{e['measured_s']:.2f} s.")
    lines += ["", "The naive form writes the N x V logits and passes over them about nine times "
              "(max, exp-sum, log-softmax, the gradient, two matmuls reading it), all from DRAM "
              "once N x V exceeds the caches; the fused form passes over one chunk at a time, "
              "so its extra traffic is re-reading the weight and its gradient once per chunk. "
              "Both are bound by the three matmuls (2 N d V flops each) once d is large."]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, smoke test")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--render", action="store_true",
                        help="only rebuild the derived sections and results.md from results.json")
    args = parser.parse_args()
    if args.render:
        path = os.path.join(args.out, "results.json")
        with open(path) as f:
            results = json.load(f)
        write(results, args.out)
        return
    cfg = QUICK if args.quick else FULL
    t0 = time.perf_counter()
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print("machine limits", flush=True)
    machine = run_case({"case": "machine", "n": cfg["linear_n"], "d": cfg["linear_d"],
                        "v": cfg["linear_vs"][0]}, cfg["timeout"])[0]
    print("losses from logits", flush=True)
    losses = []
    for case in ("torch_losses", "tf_losses"):
        losses += run_case({"case": case, "sizes": cfg["loss_sizes"],
                            "repeats": cfg["loss_repeats"]}, cfg["timeout"])
    print("linear cross-entropy", flush=True)
    linear = []
    base = {"n": cfg["linear_n"], "d": cfg["linear_d"]}
    for m in TORCH_METHODS:  # one process per method, sizes in increasing order
        slow = m.startswith("torch.")
        vs = {"torch.compile(naive)": cfg["compile_vs"],
              "torch.nn.functional.linear_cross_entropy": cfg["slow_vs"]}.get(m, cfg["linear_vs"])
        if vs:
            linear += run_case(dict(base, case="torch_linear", method=m, vs=vs,
                                    repeats=cfg["slow_repeats"] if slow else cfg["linear_repeats"]),
                               cfg["timeout"])
    for v in cfg["linear_vs"]:  # TensorFlow keeps freed memory: one process per size
        for m in TF_METHODS:
            linear += run_case(dict(base, case="tf_linear", method=m, v=v,
                                    repeats=cfg["linear_repeats"]), cfg["timeout"])
    print("linear cross-entropy at larger d (two threads)", flush=True)
    grid = run_grid(cfg["grid"], cfg["timeout"])
    print("float32 accuracy", flush=True)
    accuracy = accuracy_check()
    import tensorflow as tf
    import torch
    results = {
        "conditions": {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "tensorflow": tf.__version__,
            "load_before": load_before,
            "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "quick": args.quick, "config": cfg,
            "method": ("each case in a fresh process; extra peak memory = peak RSS (VmHWM, reset "
                       "through /proc/self/clear_refs) during the first forward+backward minus "
                       "RSS just before it (inputs excluded; gradients and temporaries included), for "
                       "TensorFlow the same read from its CPU allocator (get_memory_info), which "
                       "reuses freed buffers the RSS would not show; "
                       "time = median of the repeated steps after it "
                       f"({cfg['loss_repeats']} for losses, after {WARMUP_CALLS} untimed calls, "
                       f"{cfg['linear_repeats']} for linear CE, "
                       f"{cfg['slow_repeats']} for torch's linear_cross_entropy and torch.compile, "
                       "whose first call, compilation included, is in first_call_s); "
                       "one thread (torch.set_num_threads(1), TF intra/inter-op 1)."),
            "wall_s": time.perf_counter() - t0},
        "machine": machine, "losses": losses, "linear": linear, "accuracy": accuracy,
        "linear_grid": grid,
    }
    write(results, args.out)


def run_grid(grid, timeout):
    """Every method at each (N, d, V) of ``grid["shapes"]``, naive and xentlib at
    ``grid["pairs"]``, fresh processes, same run; then xentlib alone at the shapes where
    the naive logits would not fit."""
    timeout = grid.get("timeout", timeout)
    rows = []
    torch_methods = ["naive", "xentlib", "torch.nn.functional.linear_cross_entropy", TUNED]
    if grid["compile"]:
        torch_methods.append("torch.compile(naive)")
    base = {"threads": grid["threads"], "repeats": grid["repeats"]}
    for n, d, v in grid["shapes"]:
        for m in torch_methods:
            rows += run_case(dict(base, case="torch_linear", method=m, n=n, d=d, vs=[v],
                                  tuned_rows=default_rows(n, d, v)), timeout)
        for m in TF_METHODS:
            rows += run_case(dict(base, case="tf_linear", method=m, n=n, d=d, v=v), timeout)
    for n, d, v in grid["pairs"]:
        for m in TF_METHODS:
            rows += run_case(dict(base, case="torch_linear", method=m, n=n, d=d, vs=[v]), timeout)
            rows += run_case(dict(base, case="tf_linear", method=m, n=n, d=d, v=v), timeout)
    for n, d, v in grid["xentlib_only"]:
        rows += run_case(dict(base, case="torch_linear", method="xentlib", n=n, d=d, vs=[v]),
                         timeout)
        rows += run_case(dict(base, case="tf_linear", method="xentlib", n=n, d=d, v=v), timeout)
    n, d, v = grid["chunk_sweep"]["shape"]
    for chunk in grid["chunk_sweep"]["rows"]:
        spec = dict(base, method="xentlib", n=n, d=d, chunk_size=chunk)
        rows += run_case(dict(spec, case="torch_linear", vs=[v]), timeout)
        rows += run_case(dict(spec, case="tf_linear", v=v), timeout)
    return rows


def temporaries(row):
    """Extra peak bytes beyond the gradients of hidden and weight, which every method returns."""
    return row["peak_extra_bytes"] - row.get("gradient_bytes", 0)


def same_shape(rows, r, method):
    return next((b for b in rows if b.get("framework") == r.get("framework")
                 and b.get("method") == method and "fwdbwd_s" in b
                 and all(b.get(k) == r.get(k) for k in ("n", "d", "v"))), None)


def cpu_seconds(row):
    """CPU seconds of a step (wall seconds for results measured before CPU time was)."""
    return row.get("fwdbwd_cpu_s", row["fwdbwd_s"])


def grid_ratios(grid):
    res = []
    for r in grid:
        naive = same_shape(grid, r, "naive")
        if not r.get("method", "").startswith("xentlib") or "fwdbwd_s" not in r or naive is None:
            continue
        mem = r["peak_extra_bytes"] / naive["peak_extra_bytes"]
        t = r["fwdbwd_s"] / naive["fwdbwd_s"]
        cpu = cpu_seconds(r) / cpu_seconds(naive)
        temp = f", temporaries {temporaries(r) / temporaries(naive):.3f}x" \
            if "gradient_bytes" in r else ""
        res.append({"comparison": f"{r['framework']}: linear CE at N={r['n']}, d={r['d']}, "
                                  f"V={r['v']}, {r['threads']} threads, {r['method']} / naive",
                    "value": f"CPU time {cpu:.2f}x (wall {t:.2f}x), memory {mem:.3f}x{temp}"})
    return res


def memory_figure(results, path):
    """Extra peak memory of one forward+backward against V, naive and xentlib (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in results["linear"] + results.get("linear_grid", [])
            if "peak_extra_bytes" in r and r.get("method") in ("naive", "xentlib")
            and (r.get("n"), r.get("d")) == (results["conditions"]["config"]["linear_n"],
                                             results["conditions"]["config"]["linear_d"])]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for fw, marker in (("torch", "o"), ("tensorflow", "s")):
        for method, style in (("naive", "--"), ("xentlib", "-")):
            pts = sorted((r["v"], r["peak_extra_bytes"] / 2 ** 20) for r in rows
                         if r["framework"] == fw and r["method"] == method)
            if pts:
                ax.plot(*zip(*pts), style, marker=marker, label=f"{fw} {method}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("vocabulary size V (classes)")
    ax.set_ylabel("extra peak memory of one step (MiB)")
    n, d = results["conditions"]["config"]["linear_n"], results["conditions"]["config"]["linear_d"]
    ax.set_title(f"Linear cross-entropy, forward + backward, N={n}, d={d}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(results, out):
    results["physical"] = physical(results["machine"], results["linear"], results["losses"])
    results["ratios"] = headline_ratios(results["losses"], results["linear"],
                                        results["accuracy"]) \
        + grid_ratios(results.get("linear_grid", []))
    os.makedirs(out, exist_ok=True)
    if results["linear"]:
        memory_figure(results, os.path.join(out, "linear_memory.png"))
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    # Chapter 5 reads the results wherever xentlib is installed (xentlib.datasets.benchmark_results).
    shutil.copyfile(os.path.join(out, "results.json"), PACKAGED_RESULTS)
    md = markdown(results)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md)
    print(md)


def _cpu():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
