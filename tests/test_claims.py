"""The notebook checks can fail: a false claim, or a changed exact output, fails nbval.

Each case writes a tiny notebook whose stored outputs are given, then runs nbval on it
the way ``make test`` does. A measured cell (tag ``nbval-ignore-output``) whose stored
output differs passes; the same difference in an exact cell fails; a claim that does
not hold fails whatever the tags.
"""
from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest

MEASURED = ["nbval-ignore-output"]


def stream(text):
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def notebook(*cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for count, (source, outputs, tags) in enumerate(cells, start=1):
        cell = nbformat.v4.new_code_cell(source, outputs=outputs, execution_count=count)
        cell.metadata["tags"] = tags
        nb.cells.append(cell)
    return nb


def nbval(tmp_path, nb):
    path = tmp_path / "fixture.ipynb"
    nbformat.write(nb, path)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist",
                           "-p", "no:cacheprovider", "--nbval", "--nbval-current-env",
                           str(path)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)


SETUP = ("from xentlib.notebook import expect\naccuracy = 0.95", [], [])
TRAINED = ("print(accuracy)", [stream("0.9511\n")], MEASURED)  # another CPU's digits


def test_measured_output_may_differ_while_its_claim_holds(tmp_path):
    claim = ('expect("held-out accuracy", accuracy, ge=0.93)',
             [stream("checked: held-out accuracy = 0.9511 >= 0.93\n")], MEASURED)
    result = nbval(tmp_path, notebook(SETUP, TRAINED, claim))
    assert result.returncode == 0, result.stdout


def test_false_claim_fails(tmp_path):
    claim = ('expect("held-out accuracy", accuracy, ge=0.99)', [], MEASURED)
    result = nbval(tmp_path, notebook(SETUP, TRAINED, claim))
    assert result.returncode != 0
    assert "claim no longer holds: held-out accuracy = 0.95, required >= 0.99" in result.stdout


@pytest.mark.parametrize("tags, fails", [([], True), (MEASURED, False)])
def test_changed_output_fails_only_in_exact_cells(tmp_path, tags, fails):
    cell = ("print(accuracy)", [stream("0.9511\n")], tags)
    result = nbval(tmp_path, notebook(SETUP, cell))
    assert (result.returncode != 0) == fails, result.stdout
