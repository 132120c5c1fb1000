"""The reader's side of the book: one repository setting, working navigation, numbered exercises.

* **One repository setting.** ``repository.url`` in ``_config.yml`` is the only place
  the book's home is named. Empty (no public repository yet), every button that
  would lead to it is switched off: launch (Binder, Colab), edit, issue and
  repository buttons. Set, they are all on, and ``{if-repository}`` blocks are
  shown with ``REPOSITORY_URL`` and ``REPOSITORY_DIR`` replaced (the landing page's
  ``git clone`` line).
* **Navigation below desktop width.** pydata-sphinx-theme 0.17 hooks its sidebar
  dialogs to the *first* ``.primary-toggle``/``.secondary-toggle`` of the page, which
  is in its own header bar; sphinx-book-theme 1.3 draws that bar (empty but for a
  second search box, PST's default ``navbar_persistent``) and puts the visible toggles
  in its article header, which therefore did nothing. With ``navbar_persistent``
  empty the bar holds nothing, so the article header's toggles are the first ones
  and open the sidebars, and the duplicate search box is gone.
* **The ".pdf" download** is the browser's print dialog, not the book's PDF
  (``make pdf``); it is removed from the download menu.
* **Exercise numbers per chapter.** sphinx-exercise numbers exercises across the
  whole book; the book's chapters carry their numbers in their titles
  ("4.2 Label smoothing"), so exercise *k* of that page becomes "Exercise 4.2.k"
  (just *k* on a page without a number).
* **Bibliography labels** match the author-year citations ("Szegedy et al., 2016"),
  sorted by author, instead of pybtex's alpha labels ("[CvMerrienboerG+14]"):
  ``bibtex_default_style: author_year_labels``.
* **PDF tables.** pandas DataFrames reach the LaTeX builder as their HTML table
  (``nb_mime_priority_overrides``) and are turned into real tables here, instead of
  pandas' wrapped plain text; tables in the text become ``longtable`` so they break
  across pages instead of leaving half-empty pages before them.
* **Search from a disk copy.** Sphinx fetches each hit's page for its summary, which a
  browser refuses on ``file://``; the pages' text is written to
  ``_static/reader-search-pages.js`` and ``static/reader-search.js`` answers the search
  page's fetches from it (only when opened from disk).
* ``static/reader.css``: wide tables, code and equations scroll inside their own
  box; an 88-character code line fits at 1280 px; code wraps in print.
* ``static/reader.js``: framework tabs open on the reader's most recent choice that
  the tab-set has (sphinx-design alone falls back to the first tab, PyTorch).
"""
from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

LOGGER = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
#: theme switches that lead to the repository
REPOSITORY_BUTTONS = ("use_edit_page_button", "use_issues_button", "use_repository_button")
TITLE_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)+|\d+(?=\.))\.?\s")  # "4.2 ..." or "1. ..."


def repository_url(config) -> str:
    """The book's public repository (``repository.url`` in ``_config.yml``), or ``""``."""
    return str((config.html_theme_options or {}).get("repository_url") or "").strip().rstrip("/")


def apply_repository_setting(config) -> bool:
    """Repository and launch buttons on when a repository is set, off otherwise; True if set."""
    options = dict(config.html_theme_options or {})
    url = repository_url(config)
    options.setdefault("navbar_persistent", [])  # no header bar: see the module's docstring
    for key in REPOSITORY_BUTTONS:
        options[key] = bool(url)
    if not url:
        options["launch_buttons"] = {}
        options.pop("repository_url", None)
    config.html_theme_options = options
    return bool(url)


def _config_inited(app, config):
    if apply_repository_setting(config):
        app.tags.add("repository")
    config.html_static_path = [*config.html_static_path, str(HERE / "static")]


def _drop_print_button(app, pagename, templatename, context, doctree):
    for button in context.get("header_buttons") or []:
        if button.get("label") == "download-buttons":
            button["buttons"] = [b for b in button["buttons"]
                                 if b.get("label") != "download-pdf-button"]


def chapter_number(title: str) -> tuple[int, ...]:
    """``"4.2 Label smoothing"`` -> ``(4, 2)``; ``"1. Background"`` -> ``(1,)``; else ``()``."""
    match = TITLE_NUMBER.match(title)
    return tuple(int(part) for part in match[1].split(".")) if match else ()


def _number_exercises_per_chapter(app, env):
    for docname, by_type in env.toc_fignumbers.items():
        exercises = by_type.get("exercise")
        if not exercises:
            continue
        prefix = chapter_number(env.titles[docname].astext()) if docname in env.titles else ()
        in_order = sorted(exercises, key=lambda ids: exercises[ids])
        for k, ids in enumerate(in_order, start=1):
            exercises[ids] = (*prefix, k)
    return []


def _surname(person) -> str:
    return re.sub(r"[{}\\]", "", " ".join(person.prelast_names + person.last_names))


def author_year_label(entry) -> str:
    """``"Szegedy et al., 2016"``, ``"Cho and Bengio, 2014"``, ``"Shannon, 1948"``."""
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_surname(p) for p in people]
    if len(names) > 2:
        who = f"{names[0]} et al."
    elif names:
        who = " and ".join(names)
    else:
        who = re.sub(r"[{}]", "", entry.fields.get("title", entry.key))[:30]
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabels(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        for entry in sorted_entries:
            yield author_year_label(entry)


class AuthorYearLabelStyle(PlainStyle):
    """pybtex's plain style (sorted by author, year, title) with author-year labels."""

    default_label_style = AuthorYearLabels


class _TableCells(HTMLParser):
    """The rows of the first ``<table>`` of an HTML fragment: ``[(in_thead, [cell, ...]), ...]``."""

    def __init__(self):
        super().__init__()
        self.rows, self._cell, self._in_head = [], None, False

    def handle_starttag(self, tag, attrs):
        if tag == "thead":
            self._in_head = True
        elif tag == "tr":
            self.rows.append((self._in_head, []))
        elif tag in ("td", "th") and self.rows:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "thead":
            self._in_head = False
        elif tag in ("td", "th") and self._cell is not None:
            self.rows[-1][1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def html_table_to_docutils(html: str) -> nodes.table | None:
    """A docutils table with the cells of an HTML table (a pandas DataFrame), or None."""
    parser = _TableCells()
    parser.feed(html)
    rows = [(head, cells) for head, cells in parser.rows if cells]
    if not rows:
        return None
    width = max(len(cells) for _, cells in rows)
    group = nodes.tgroup(cols=width)
    group += [nodes.colspec(colwidth=1) for _ in range(width)]
    parts = {True: nodes.thead(), False: nodes.tbody()}
    for head, cells in rows:
        row = nodes.row()
        for text in cells + [""] * (width - len(cells)):
            row += nodes.entry("", nodes.paragraph(text=text))
        parts[head] += row
    group += [part for part in parts.values() if part.children]
    return nodes.table("", group, classes=["dataframe"])


class LatexTables(SphinxPostTransform):
    """PDF only: DataFrames' HTML outputs become tables; tables in the text may break pages."""

    default_priority = 400
    builders = ("latex",)

    def run(self, **kwargs):
        for raw in list(self.document.findall(nodes.raw)):
            if raw.get("format") != "html" or "output" not in raw.get("classes", []):
                continue
            table = html_table_to_docutils(raw.astext()) if "<table" in raw.astext() else None
            if table is None:
                LOGGER.warning("an HTML output that is not a table has no PDF form",
                               location=raw, type="reader", subtype="html_output")
                raw.parent.remove(raw)
            else:
                raw.replace_self(table)
        for table in self.document.findall(nodes.table):
            if isinstance(table.parent, nodes.section) and "longtable" not in table["classes"]:
                table["classes"].append("longtable")
                _widths_from_content(table)


def _widths_from_content(table):
    """Column widths in proportion to the longest text of each column (capped), so that a
    longtable wraps its cells inside the page instead of running off it."""
    group = next(table.findall(nodes.tgroup), None)
    if group is None:
        return
    colspecs = [c for c in group.children if isinstance(c, nodes.colspec)]
    longest = [10] * len(colspecs)  # no column narrower than a short word
    for row in group.findall(nodes.row):
        for k, entry in enumerate(e for e in row.children if isinstance(e, nodes.entry)):
            if k < len(longest):
                longest[k] = max(longest[k], min(len(entry.astext()), 50))
    for colspec, width in zip(colspecs, longest):
        colspec["colwidth"] = width
    table["classes"] = [c for c in table["classes"] if c != "colwidths-auto"] + ["colwidths-given"]


SEARCH_PAGES = "reader-search-pages.js"


def _section_html(node) -> str:
    """Text of a doctree as nested ``<section id>`` elements (what search summaries read)."""
    parts = []
    for child in node.children:
        if isinstance(child, nodes.section):
            parts.append(_section_html(child))
        elif isinstance(child, nodes.Element):
            parts.append(html.escape(child.astext()) + "\n")
    if isinstance(node, nodes.section) and node["ids"]:
        return f'<section id="{node["ids"][0]}">' + "".join(parts) + "</section>"
    return "".join(parts)


def _search_page_scripts(app, pagename, templatename, context, doctree):
    if pagename == "search":
        app.add_js_file(SEARCH_PAGES)
        app.add_js_file("reader-search.js")


def _write_search_pages(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    suffix = app.builder.out_suffix
    pages = {docname + suffix: '<div role="main">' + _section_html(app.env.get_doctree(docname))
             + "</div>" for docname in sorted(app.env.found_docs)}
    target = Path(app.outdir) / "_static" / SEARCH_PAGES
    target.write_text("window.READER_PAGES = " + json.dumps(pages, ensure_ascii=False) + ";\n",
                      encoding="utf8")


class IfRepository(SphinxDirective):
    """Content shown only when ``repository.url`` is set, with ``REPOSITORY_URL`` and
    ``REPOSITORY_DIR`` (the clone's folder name) replaced."""

    has_content = True

    def run(self):
        url = repository_url(self.config)
        if not url:
            return []
        folder = url.rsplit("/", 1)[-1].removesuffix(".git")
        lines = [line.replace("REPOSITORY_URL", url).replace("REPOSITORY_DIR", folder)
                 for line in self.content]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, items=self.content.items), self.content_offset,
                                container)
        return container.children


def setup(app):
    register_plugin("pybtex.style.formatting", "author_year_labels", AuthorYearLabelStyle)
    app.connect("config-inited", _config_inited, priority=800)
    app.connect("env-get-updated", _number_exercises_per_chapter, priority=900)
    app.connect("html-page-context", _drop_print_button, priority=900)
    app.add_directive("if-repository", IfRepository)
    app.add_post_transform(LatexTables)
    app.connect("html-page-context", _search_page_scripts)
    app.connect("build-finished", _write_search_pages)
    app.add_css_file("reader.css")
    app.add_js_file("reader.js")
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
