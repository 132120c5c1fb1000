"""What a reader sees in the notebooks: short code lines, no machine paths, paired exercises.

Static checks of every notebook of ``book/`` (the rules are in CONTRIBUTING.md,
"Reader conventions"), the first-cell installer ``scripts/install_cell.py``, the
reader extension ``book/_ext/reader.py``, and one notebook executed outside the
repository with xentlib installed from a freshly built wheel.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import install_cell  # noqa: E402  (found through the sys.path entries above)
import reader  # noqa: E402  (found through the sys.path entries above)

sys.path.pop(0)
sys.path.pop(0)

NOTEBOOKS = install_cell.book_notebooks()
EACH_NOTEBOOK = pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
MAX_LINE = 88
#: what must never appear in a page: the build machine's paths
MACHINE_PATH = re.compile(r"site-packages|/work/|/root/|/home/|\.venv|/tmp/ipykernel")
FENCE = re.compile(r"^(`{3,}|:{3,})\{(exercise|solution|solution-start|solution-end)\}[ \t]*(\S*)",
                   re.MULTILINE)
WHY = re.compile(r"\b(why|explain)\b", re.IGNORECASE)
HIDING_TAGS = {"hide-cell", "hide-input", "hide-output", "remove-cell", "remove-input",
               "remove-output"}


def rel(path):
    return str(Path(path).relative_to(ROOT))


def read(path):
    return nbformat.read(path, as_version=4)


def output_text(output) -> str:
    if output.output_type == "stream":
        return output.text
    if output.output_type == "error":
        return "\n".join([output.ename, output.evalue, *output.traceback])
    return "\n".join(v if isinstance(v, str) else json.dumps(v)
                     for k, v in output.get("data", {}).items() if k.startswith("text/"))


# ---- code cells: short lines, clean outputs --------------------------------------------

@EACH_NOTEBOOK
def test_code_lines_fit_the_page(path):
    """Every line of every code cell is at most 88 characters (no sideways scrolling)."""
    long = [f"{rel(path)} cell {i}: {len(line)} chars: {line[:60]}..."
            for i, cell in enumerate(read(path).cells) if cell.cell_type == "code"
            for line in cell.source.splitlines() if len(line) > MAX_LINE]
    assert not long, f"{len(long)} code lines longer than {MAX_LINE} characters:\n" + "\n".join(long)


@EACH_NOTEBOOK
def test_no_machine_paths_in_notebooks(path):
    """No output or source names the build machine (site-packages, .venv, /work/, /root/)."""
    found = []
    for i, cell in enumerate(read(path).cells):
        for text in [cell.source] + [output_text(o) for o in cell.get("outputs", [])]:
            match = MACHINE_PATH.search(text)
            if match:
                found.append(f"cell {i}: ...{text[max(0, match.start() - 50):match.end() + 30]!r}")
    assert not found, "\n".join(found)


# Images, and myst-nb glue records (shown where the prose cites them), are not empty boxes.
SHOWN_ELSEWHERE = ("image/", "application/papermill.record/")


@EACH_NOTEBOOK
def test_no_empty_outputs(path):
    """An output box with nothing in it (an empty print, a blank stream) is not stored."""
    empty = [f"cell {i}" for i, cell in enumerate(read(path).cells)
             if cell.cell_type == "code" for o in cell.outputs
             if o.output_type in ("stream", "execute_result", "display_data")
             and not output_text(o).strip()
             and not any(k.startswith(SHOWN_ELSEWHERE) for k in o.get("data", {}))]
    assert not empty, "empty outputs: " + ", ".join(empty)


# ---- exercises ---------------------------------------------------------------------------

def exercises_and_solutions(nb):
    """``(exercises, solutions, problems)`` of one notebook.

    exercises: label -> exercise text; solutions: label -> list of dicts with the
    solution's prose and its code cells (a gated ``solution-start``/``solution-end``
    pair includes every cell in between).
    """
    exercises, solutions, problems = {}, {}, []
    open_solution = None
    for i, cell in enumerate(nb.cells):
        if open_solution is not None and cell.cell_type == "code":
            open_solution["code"].append((i, cell))
        if cell.cell_type != "markdown":
            continue
        text = cell.source
        matches = list(FENCE.finditer(text))
        if open_solution is not None and not any(m[2] == "solution-end" for m in matches):
            open_solution["prose"] += text
        for k, m in enumerate(matches):
            kind, arg = m[2], m[3]
            body_end = matches[k + 1].start() if k + 1 < len(matches) else len(text)
            block = text[m.end():body_end]
            if kind == "exercise":
                label = re.search(r"^:label:\s*(\S+)", block, re.MULTILINE)
                if not label:
                    problems.append(f"cell {i}: an exercise without :label:")
                    continue
                exercises[label[1]] = block
            elif kind == "solution":
                solutions.setdefault(arg, []).append({"cell": i, "prose": block, "code": []})
            elif kind == "solution-start":
                if open_solution is not None:
                    problems.append(f"cell {i}: solution-start inside an open solution")
                open_solution = {"cell": i, "prose": block, "code": []}
                solutions.setdefault(arg, []).append(open_solution)
            elif kind == "solution-end":
                if open_solution is None:
                    problems.append(f"cell {i}: solution-end without solution-start")
                open_solution = None
    if open_solution is not None:
        problems.append(f"cell {open_solution['cell']}: solution-start without solution-end")
    return exercises, solutions, problems


def prose(text: str) -> str:
    """The words of a directive body, without its options and fences."""
    lines = [line for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith(":") and not re.match(r"^(`{3,}|:{3,})", line)]
    return " ".join(lines).strip()


def test_every_exercise_has_exactly_one_solution():
    problems = []
    for p in NOTEBOOKS:
        exercises, solutions, found = exercises_and_solutions(read(p))
        problems += [f"{rel(p)} {f}" for f in found]
        for label in exercises:
            n = len(solutions.get(label, []))
            if n != 1:
                problems.append(f"{rel(p)}: exercise {label} has {n} solutions")
        for label in solutions:
            if label not in exercises:
                problems.append(f"{rel(p)}: solution for {label!r}, which is no exercise of this page")
    assert not problems, "\n".join(problems)


def test_why_questions_get_a_prose_answer():
    """An exercise that asks why (or to explain) is answered in words, not in code comments."""
    missing = []
    for p in NOTEBOOKS:
        exercises, solutions, _ = exercises_and_solutions(read(p))
        for label, text in exercises.items():
            if WHY.search(text) and not any(prose(s["prose"]) for s in solutions.get(label, [])):
                missing.append(f"{rel(p)}: {label}")
    assert not missing, "exercises asking why without a prose answer: " + ", ".join(missing)


def test_solution_code_is_not_hidden_again():
    """A solution is already collapsed; hidden cells inside it would vanish from the PDF."""
    hidden = []
    for p in NOTEBOOKS:
        _, solutions, _ = exercises_and_solutions(read(p))
        for label, items in solutions.items():
            for s in items:
                hidden += [f"{rel(p)} cell {i} ({label})" for i, cell in s["code"]
                           if HIDING_TAGS & set(cell.metadata.get("tags", []))]
    assert not hidden, "hidden cells inside solutions: " + ", ".join(hidden)


@EACH_NOTEBOOK
def test_no_unattached_solutions(path):
    """Solutions are attached to their exercise: no bare "**Solution**" headings."""
    old = [f"cell {i}" for i, cell in enumerate(read(path).cells)
           if cell.cell_type == "markdown"
           and re.search(r"^\s*\*\*Solutions?\b[^*]*\*\*", cell.source, re.MULTILINE)]
    assert not old, "old-style solutions: " + ", ".join(old)


# ---- the first cell: xentlib installed where it is missing --------------------------------

def test_install_cell_script(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 1. Title"),
                                         nbformat.v4.new_code_cell("print(1)")])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert install_cell.update_notebook(path, "", "main")
    assert not install_cell.update_notebook(path, "", "main")  # idempotent
    first = read(path).cells[0]
    assert "ModuleNotFoundError" in first.source and "remove-cell" in first.metadata.tags
    assert install_cell.update_notebook(path, "https://github.com/o/r", "dev")
    cells = read(path).cells
    assert [c.cell_type for c in cells] == ["code", "markdown", "code"]  # replaced, not added
    assert 'git+https://github.com/o/r.git@dev"' in cells[0].source
    assert all(len(line) <= MAX_LINE for line in cells[0].source.splitlines())
    # the indented %pip line is IPython syntax: it becomes a call to the pip magic
    from IPython.core.inputtransformer2 import TransformerManager
    code = TransformerManager().transform_cell(cells[0].source)
    assert "run_line_magic('pip', 'install --quiet" in code
    compile(code, "cell", "exec")


def test_every_notebook_starts_with_the_install_cell():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "install_cell.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


# ---- the reader extension ------------------------------------------------------------------

class FakeConfig:
    def __init__(self, **theme_options):
        self.html_theme_options = theme_options


def test_no_repository_no_buttons():
    config = FakeConfig(repository_url="", launch_buttons={"colab_url": "https://colab"},
                        use_edit_page_button=True)
    assert reader.apply_repository_setting(config) is False
    options = config.html_theme_options
    assert options["launch_buttons"] == {} and "repository_url" not in options
    assert not any(options[k] for k in reader.REPOSITORY_BUTTONS)
    assert options["navbar_persistent"] == []


def test_a_repository_turns_every_button_on():
    config = FakeConfig(repository_url="https://github.com/o/r/",
                        launch_buttons={"colab_url": "https://colab"})
    assert reader.apply_repository_setting(config) is True
    options = config.html_theme_options
    assert options["launch_buttons"] == {"colab_url": "https://colab"}
    assert all(options[k] for k in reader.REPOSITORY_BUTTONS)


@pytest.mark.parametrize("title, number", [("4.2 Label smoothing", (4, 2)),
                                           ("1. Background (背景介绍)", (1,)),
                                           ("Glossary (术语表)", ()), ("2026 in review", ())])
def test_chapter_number_from_title(title, number):
    assert reader.chapter_number(title) == number


# ---- a notebook outside the repository, xentlib from a wheel --------------------------------

OUTSIDE_NOTEBOOK = [
    install_cell.install_source("", "main"),
    "from xentlib.notebook import setup\nsetup()",
    textwrap.dedent("""\
        import importlib.resources
        import xentlib
        from xentlib import datasets
        print(xentlib.__file__)
        split = datasets.digits()
        print([a.shape for a in split][:2])
        data = importlib.resources.files("xentlib") / "data"
        for f in sorted(data.iterdir(), key=lambda f: f.name):
            if f.name.endswith(".npz"):
                with importlib.resources.as_file(f) as path:
                    import numpy as np
                    print(f.name, sorted(np.load(path).files))"""),
    "import json\njson.loads('{')",
]


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    """A venv with xentlib installed from a wheel built now; the pinned packages come from
    the repository's .venv (its site-packages on the path, not its editable xentlib)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy: building in the repository would leave build/ behind
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "xentlib", source / "xentlib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(tmp / "dist"), str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    wheel = next((tmp / "dist").glob("xentlib-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                           "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # a plain path entry: the .venv's .pth files (the editable xentlib) are not processed
    Path(purelib, "pinned_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python, wheel


@pytest.fixture(scope="module")
def outside_run(wheel_venv, tmp_path_factory):
    """A small chapter copied outside the repository and executed with the wheel's xentlib."""
    python, _ = wheel_venv
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in OUTSIDE_NOTEBOOK])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    outside = tmp_path_factory.mktemp("reader")
    nb_path = outside / "chapter.ipynb"
    nbformat.write(nb, nb_path)
    script = textwrap.dedent(f"""\
        import nbformat
        from nbclient import NotebookClient
        nb = nbformat.read({str(nb_path)!r}, as_version=4)
        NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                       resources={{"metadata": {{"path": {str(outside)!r}}}}}).execute()
        nbformat.write(nb, {str(nb_path)!r})
        """)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONHASHSEED="0")
    done = subprocess.run([str(python), "-c", script], cwd=outside, capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    cells = read(nb_path).cells
    return python, cells, ["".join(output_text(o) for o in c.outputs) for c in cells]


def test_notebook_runs_outside_the_repository(outside_run):
    python, cells, printed = outside_run
    for cell in cells[:3]:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{cell.source[:40]!r}: {errors[0].ename}: {errors[0].evalue}"
    assert not cells[0].outputs and not cells[1].outputs  # install cell and setup(): silent
    assert printed[2].startswith(str(python.parents[1])), "xentlib did not come from the wheel"
    assert str(ROOT) not in printed[2]
    assert "(1347, 64)" in printed[2] or "64)" in printed[2], printed[2]


def test_errors_show_the_cell_line_and_the_error_only(outside_run):
    """setup()'s short tracebacks: the cell's line and the final error; no library frame, no path."""
    _, cells, _ = outside_run
    error = [o for o in cells[3].outputs if o.output_type == "error"]
    assert error and error[0].ename == "JSONDecodeError"
    shown = "\n".join(error[0].traceback)
    assert "Cell In[4], line 2" in shown and "json.loads('{')" in shown
    assert shown.rstrip().splitlines()[-1].startswith("json.decoder.JSONDecodeError: Expecting")
    assert not MACHINE_PATH.search(shown) and "decoder.py" not in shown, shown


def test_the_wheel_ships_the_data_files(outside_run):
    _, _, printed = outside_run
    assert "speech_digits.npz" in printed[2], "the wheel ships no data files: " + printed[2]


def test_dataframe_html_becomes_a_table():
    """The PDF typesets a DataFrame's HTML output as a table (book/_ext/reader.py)."""
    html = ('<div><style>.x {}</style><table class="dataframe"><thead><tr><th></th><th>loss</th>'
            "</tr><tr><th>model</th><th></th></tr></thead><tbody><tr><th>small</th><td>0.11</td>"
            "</tr></tbody></table></div>")
    table = reader.html_table_to_docutils(html)
    rows = [[e.astext() for e in row.children] for row in table.findall(reader.nodes.row)]
    assert rows == [["", "loss"], ["model", ""], ["small", "0.11"]]
    assert len(list(table.findall(reader.nodes.thead))[0].children) == 2
    assert reader.html_table_to_docutils("<p>no table</p>") is None


def test_bibliography_labels_are_author_year():
    from pybtex.database import Entry, Person
    def entry(*names, year="2016"):
        return Entry("article", fields={"year": year, "title": "T"},
                     persons={"author": [Person(n) for n in names]})
    assert reader.author_year_label(entry("Shannon, Claude")) == "Shannon, 2016"
    assert reader.author_year_label(entry("Cho, K.", "Bengio, Y.")) == "Cho and Bengio, 2016"
    assert reader.author_year_label(entry("Szegedy, C.", "Vanhoucke, V.", "Ioffe, S.")) == \
        "Szegedy et al., 2016"
    assert reader.author_year_label(entry("van Merriënboer, Bart")) == "van Merriënboer, 2016"
