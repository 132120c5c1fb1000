"""Merge each cell's consecutive stdout/stderr pieces into one output after execution.

A kernel flushes a print's text when it likes: under load one ``print`` can be stored as
two stream outputs, a trailing newline alone in the second, which shows as an empty box.
``make notebooks`` runs this on every notebook it executes, so a cell's stream is one
block whatever the machine's load was.

    python scripts/tidy_outputs.py book/x.ipynb [...]
"""
from __future__ import annotations

import sys

import nbformat


def merge_streams(outputs):
    merged = []
    for out in outputs:
        if (out.get("output_type") == "stream" and merged
                and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == out.get("name")):
            merged[-1]["text"] += out["text"]
        else:
            merged.append(out)
    return merged


def main(paths):
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = merge_streams(cell.outputs)
        nbformat.write(nb, path)


if __name__ == "__main__":
    main(sys.argv[1:])
