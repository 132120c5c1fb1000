"""Measure how far each notebook claim's value moves across seeds and CPUs.

Executes each notebook (a copy in memory; the file on disk is not touched) once per
configuration: the native CPU with seed offsets 0, 1, 2 (``XENTLIB_SEED_OFFSET``, read
by ``xentlib.notebook.seed_all``) and the emulated CPU of ``make test`` with offset 0.
Every ``expect(...)`` line logs its value (``XENTLIB_CLAIMS_LOG``); the table printed
at the end gives, per claim, the bound and the smallest and largest value seen, so a
tolerance can be chosen from the measured spread instead of from one run.

    .venv/bin/python scripts/claim_spread.py book/04_examples/01_mlp_digits.ipynb [...]
    .venv/bin/python scripts/claim_spread.py --seeds 0 1 --no-emulated book/05_trends.ipynb
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import nbformat
from emulated_cpu import EMULATED_CPU  # the same settings as `make test`
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def run(notebook: Path, env: dict[str, str]) -> tuple[list[dict], str | None]:
    """Execute ``notebook`` with extra environment variables; return its claims."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as log:
        log_path = log.name
    saved = {k: os.environ.get(k) for k in env | {"XENTLIB_CLAIMS_LOG": ""}}
    os.environ.update(env, XENTLIB_CLAIMS_LOG=log_path)
    error = None
    try:
        nb = nbformat.read(notebook, as_version=4)
        client = NotebookClient(nb, timeout=900, kernel_name="python3",
                                resources={"metadata": {"path": str(notebook.parent)}})
        client.execute()
    except CellExecutionError as exc:
        error = str(exc).strip().splitlines()[-1]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    lines = Path(log_path).read_text(encoding="utf8").splitlines()
    os.unlink(log_path)
    return [json.loads(line) for line in lines], error


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--no-emulated", action="store_true")
    args = parser.parse_args(argv)
    configs = [(f"seed+{s}", {"XENTLIB_SEED_OFFSET": str(s)}) for s in args.seeds]
    if not args.no_emulated:
        configs.append(("emulated", dict(EMULATED_CPU, XENTLIB_SEED_OFFSET="0")))
    failed = False
    for notebook in args.notebooks:
        table: dict[str, dict] = {}
        for label, env in configs:
            claims, error = run(notebook.resolve(), env)
            if error:
                failed = True
                print(f"{notebook} [{label}]: stopped: {error}", file=sys.stderr)
            for c in claims:
                row = table.setdefault(c["what"], {"condition": c["condition"], "values": {}})
                row["values"][label] = (c["value"], c["ok"])
        print(f"\n## {notebook}\n")
        print("| claim | bound (last run) | " + " | ".join(label for label, _ in configs)
              + " | min | max |")
        print("|---|---|" + "---|" * (len(configs) + 2))
        for what, row in table.items():
            vals = [row["values"].get(label) for label, _ in configs]
            cells = [f"{v:.4g}" + ("" if ok else " FAIL") if v is not None else "-"
                     for v, ok in (x or (None, True) for x in vals)]
            seen = [v for v, _ in filter(None, vals)]
            print(f"| {what} | {row['condition']} | " + " | ".join(cells)
                  + f" | {min(seen):.4g} | {max(seen):.4g} |")
            failed |= any(not ok for _, ok in filter(None, vals))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
