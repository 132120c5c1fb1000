"""Give every notebook of the book the same first cell: install xentlib when the kernel lacks it.

A reader who opens a chapter on Colab (or in any fresh kernel) has no xentlib; the
first cell installs it from the book's repository (``repository.url`` and
``repository.branch`` in ``_config.yml``, the one setting behind every button).
With no repository set, the cell stops with a message that says how to install
it from the book's sources. In the repository's own environment (``make env``)
xentlib is installed, so the cell does nothing and prints nothing.

The cell is tagged ``remove-cell`` (the HTML and PDF do not show it; the
downloaded ``.ipynb`` and Colab do) and ``install-xentlib`` (how this script finds
it again). It is inserted before the title cell, or updated in place.

Usage (from the repository root)::

    python scripts/install_cell.py            # every notebook of book/
    python scripts/install_cell.py --check    # exit 1 if a notebook lacks the current cell
    python scripts/install_cell.py book/01_background.ipynb ...
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
TAG = "install-xentlib"
CELL_ID = "install-xentlib"


def repository(config_path=ROOT / "_config.yml") -> tuple[str, str]:
    """``(url, branch)`` of the book's repository; url is ``""`` when none is set."""
    config = yaml.safe_load(Path(config_path).read_text(encoding="utf8")) or {}
    repo = config.get("repository") or {}
    return str(repo.get("url") or "").strip().rstrip("/"), str(repo.get("branch") or "main")


def install_source(url: str, branch: str) -> str:
    """The first cell's code for this repository setting."""
    head = ("# The book's library: installed here if this kernel lacks it (Colab, a fresh one).\n"
            "import importlib.util\n\n"
            'if importlib.util.find_spec("xentlib") is None:\n')
    if url:
        repo = url.removesuffix(".git")
        return head + f'    %pip install --quiet "xentlib @ git+{repo}.git@{branch}"'
    return head + ('    raise ModuleNotFoundError(\n'
                   '        "xentlib is not installed: run `pip install .` in the book\'s sources"\n'
                   '    )')


def install_cell(url: str, branch: str):
    cell = nbformat.v4.new_code_cell(install_source(url, branch))
    cell.id = CELL_ID
    cell.metadata["tags"] = ["remove-cell", TAG]
    return cell


def has_current_cell(nb, source: str) -> bool:
    first = nb.cells[0] if nb.cells else None
    return (first is not None and first.cell_type == "code" and first.source == source
            and TAG in first.metadata.get("tags", []) and not first.get("outputs"))


def update_notebook(path: Path, url: str, branch: str) -> bool:
    """Insert or update the install cell of one notebook; True if the file changed."""
    nb = nbformat.read(path, as_version=4)
    cell = install_cell(url, branch)
    if has_current_cell(nb, cell.source):
        return False
    nb.cells = [c for c in nb.cells if TAG not in c.get("metadata", {}).get("tags", [])]
    nb.cells.insert(0, cell)
    nbformat.write(nb, path)
    return True


def book_notebooks(root=ROOT / "book"):
    return sorted(p for p in Path(root).rglob("*.ipynb")
                  if ".ipynb_checkpoints" not in p.parts and "_build" not in p.parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook of book/")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if outdated")
    args = parser.parse_args(argv)
    url, branch = repository()
    source = install_source(url, branch)
    outdated = []
    for path in args.notebooks or book_notebooks():
        if args.check:
            if not has_current_cell(nbformat.read(path, as_version=4), source):
                outdated.append(path)
        elif update_notebook(path, url, branch):
            print(f"updated {path}")
    for path in outdated:
        print(f"{path}: first cell is not the current install cell "
              "(run python scripts/install_cell.py)", file=sys.stderr)
    return 1 if outdated else 0


if __name__ == "__main__":
    sys.exit(main())
