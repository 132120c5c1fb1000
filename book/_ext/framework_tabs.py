"""Framework tabs (PyTorch | TensorFlow | NumPy) from ordinary notebook cells, as on d2l.ai.

A chapter shows the same step in several frameworks as consecutive code cells,
each tagged (cell metadata ``tags``) ``tab-pytorch``, ``tab-tensorflow`` or
``tab-numpy``. This transform runs after MyST-NB has turned the notebook into
a doctree and wraps every run of adjacent tagged cells into a sphinx-design
tab-set. All tab-sets share the sync group ``framework``: one click switches
every tab-set on the page, and sphinx-design's ``design-tabs.js`` stores the
choice in ``localStorage`` so the next page opens on the same framework.

The cells stay plain top-level notebook cells, so execution, nbval, the
``.ipynb`` download and Colab see exactly what the author wrote. (A
``{code-cell}`` nested inside a ``tab-item`` directive is neither executed nor
rendered by MyST-NB, issue #723, hence a transform and not a directive.)

Rules:

* tabs are ordered PyTorch, TensorFlow, NumPy whatever the cell order, so the
  default (first) tab is the same everywhere;
* a framework that repeats starts a new tab-set (a run ``pytorch, tensorflow,
  pytorch, tensorflow`` gives two tab-sets);
* a lone tagged cell (no neighbour in another framework, e.g. a NumPy-only
  plot) stays an ordinary cell: a tab-set with a single tab is only a frame;
* a cell with two framework tags is an error (a Sphinx warning, fatal with -W).

In non-HTML builders (LaTeX/PDF) sphinx-design renders each tab as a rubric
with the framework's name followed by the cell, so the PDF shows all versions.
"""
from __future__ import annotations

from docutils import nodes
from sphinx.transforms import SphinxTransform
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)

SYNC_GROUP = "framework"
#: tag suffix -> (tab label, sync id); the dict order is the tab order.
FRAMEWORKS = {
    "pytorch": "PyTorch",
    "tensorflow": "TensorFlow",
    "numpy": "NumPy",
}
TAG_CLASS = "tag_tab-"


def cell_framework(node, warn=False):
    """The framework of a tagged MyST-NB code cell, or None."""
    if not isinstance(node, nodes.container) or node.get("nb_element") != "cell_code":
        return None
    found = [c[len(TAG_CLASS):] for c in node.get("classes", [])
             if c.startswith(TAG_CLASS) and c[len(TAG_CLASS):] in FRAMEWORKS]
    if len(found) > 1 and warn:
        LOGGER.warning("a code cell carries several framework tags (%s); keep one",
                       ", ".join("tab-" + f for f in found), location=node,
                       type="framework_tabs", subtype="tags")
    return found[0] if found else None


def _tab_item(framework, cell):
    label = nodes.rubric(FRAMEWORKS[framework], nodes.Text(FRAMEWORKS[framework]),
                         classes=["sd-tab-label", "framework-tab-label"],
                         sync_group=SYNC_GROUP, sync_id=framework)
    content = nodes.container("", cell, is_div=True, design_component="tab-content",
                              classes=["sd-tab-content"])
    return nodes.container("", label, content, is_div=True, design_component="tab-item",
                           classes=["sd-tab-item"], selected=False)


def _tab_set(run):
    order = list(FRAMEWORKS)
    run = sorted(run, key=lambda fc: order.index(fc[0]))
    tab_set = nodes.container("", is_div=True, design_component="tab-set",
                              classes=["sd-tab-set", "framework-tabs"])
    tab_set.source, tab_set.line = run[0][1].source, run[0][1].line
    for framework, cell in run:
        tab_set += _tab_item(framework, cell)
    return tab_set


def group_runs(children):
    """Split a parent's children into plain nodes and runs of tagged cells.

    Returns a list whose items are either a node or a list of
    ``(framework, cell)`` pairs (a run that becomes one tab-set).
    """
    out, run = [], []
    for child in children:
        fw = cell_framework(child, warn=True)
        if fw is None:
            if run:
                out.append(run)
                run = []
            out.append(child)
            continue
        if any(fw == f for f, _ in run):
            out.append(run)
            run = []
        run.append((fw, child))
    if run:
        out.append(run)
    return out


class FrameworkTabs(SphinxTransform):
    """Wrap adjacent framework-tagged code cells into synchronised tab-sets."""

    default_priority = 400  # after MyST-NB's parse, before sphinx-design's HTML post-transform

    def apply(self, **kwargs):
        parents = {id(cell.parent): cell.parent for cell in self.document.findall(nodes.container)
                   if cell_framework(cell) is not None and cell.parent is not None}
        for parent in parents.values():
            new_children = []
            for item in group_runs(list(parent.children)):
                if isinstance(item, list) and len(item) == 1:
                    new_children.append(item[0][1])
                elif isinstance(item, list):
                    for _, cell in item:
                        cell.parent = None
                    new_children.append(_tab_set(item))
                else:
                    new_children.append(item)
            parent.children = []
            parent.extend(new_children)


def setup(app):
    app.setup_extension("sphinx_design")
    app.add_transform(FrameworkTabs)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
