"""``{xentlib-api-table}``: which function exists in which xentlib backend, generated at build time.

Rows are every name in ``__all__`` of ``xentlib.numpy``, ``xentlib.torch`` and
``xentlib.tensorflow`` (the reference's order first, backend-only extras after);
columns are the first line of the docstring and a link to the function's
autodoc entry (``xentlib.<backend>.<name>``, on the same page) for each backend
that has it. The page must also autodoc the three
modules (``automodule:: xentlib.<backend>`` with ``:members:``), or the links
are unresolved references (an error with ``-n -W``).

It also turns inline code that names a documented xentlib object in the
chapters, e.g. ``xnp.entropy`` or ``xentlib.torch.softmax``, into a link to its
entry, so the API index is linked from where each function is used (only when
the API page is part of the book).
"""
from __future__ import annotations

import importlib
import inspect
import os
import re

from docutils import nodes
from sphinx import addnodes
from sphinx.util.docutils import SphinxDirective

BACKENDS = {"numpy": "NumPy", "torch": "PyTorch", "tensorflow": "TensorFlow"}
#: prefixes of inline code that refer to a backend function (``xl`` is the book's alias)
ALIASES = {"xentlib.numpy": "numpy", "xentlib.torch": "torch", "xentlib.tensorflow": "tensorflow",
           "xnp": "numpy", "xtorch": "torch", "xtf": "tensorflow", "xl": "numpy"}
_INLINE = re.compile(r"^(?P<prefix>[\w.]+)\.(?P<name>\w+)(?:\(.*\))?$")


def _modules():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no C++ log lines in the build log
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # nor the oneDNN notice
    return {b: importlib.import_module(f"xentlib.{b}") for b in BACKENDS}


def api_names(modules):
    names = list(modules["numpy"].__all__)
    for backend in BACKENDS:
        names += [n for n in modules[backend].__all__ if n not in names]
    return names


def _summary(modules, name):
    for backend in BACKENDS:
        fn = getattr(modules[backend], name, None)
        if fn is not None and name in modules[backend].__all__ and fn.__doc__:
            return inspect.cleandoc(fn.__doc__).splitlines()[0].rstrip(".")
    return ""


def _xref(target, text, literal=True):
    ref = addnodes.pending_xref("", refdomain="py", reftype="func", reftarget=target,
                                refexplicit=True, refwarn=True)
    ref += nodes.literal(text, text) if literal else nodes.Text(text)
    return ref


_ROLE = re.compile(r":(?:math|func|class|mod|obj):`([^`]*)`|``([^`]*)``")


def _inline_rst(text):
    """The few inline reST constructs of a docstring's first line, as nodes."""
    out, pos = [], 0
    for m in _ROLE.finditer(text):
        if m.start() > pos:
            out.append(nodes.Text(text[pos:m.start()]))
        if m.group(0).startswith(":math:"):
            out.append(nodes.math(m.group(1), m.group(1)))
        else:
            code = m.group(1) if m.group(1) is not None else m.group(2)
            out.append(nodes.literal(code, code))
        pos = m.end()
    if pos < len(text):
        out.append(nodes.Text(text[pos:]))
    return out


class ApiTable(SphinxDirective):
    has_content = False

    def run(self):
        modules = _modules()
        names = api_names(modules)
        table = nodes.table(classes=["xentlib-api-table"])
        group = nodes.tgroup(cols=3)
        table += group
        for width in (30, 45, 25):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        group += head
        row = nodes.row()
        for title in ("function", "what it computes", "backends"):
            row += nodes.entry("", nodes.paragraph(text=title))
        head += row
        body = nodes.tbody()
        group += body
        for name in names:
            row = nodes.row()
            first = next(b for b in BACKENDS if name in modules[b].__all__)
            cell = nodes.paragraph()
            cell += _xref(f"xentlib.{first}.{name}", name)
            row += nodes.entry("", cell)
            summary = nodes.paragraph()
            summary += _inline_rst(_summary(modules, name))
            row += nodes.entry("", summary)
            cell = nodes.paragraph()
            links = [_xref(f"xentlib.{b}.{name}", label, literal=False)
                     for b, label in BACKENDS.items() if name in modules[b].__all__]
            for k, link in enumerate(links):
                if k:
                    cell += nodes.Text(" · ")
                cell += link
            row += nodes.entry("", cell)
            body += row
        return [table]


def _link_inline_code(app, doctree, docname):
    """Link inline code naming a documented xentlib object to its API entry (HTML only).

    ``xentlib.numpy.entropy``, ``xnp.entropy([1, 1, 2])``, ``xtorch.perplexity``,
    ``xentlib.exercises.check`` ... (aliases: ``xl``/``xnp`` NumPy, ``xtorch``,
    ``xtf``) become links when the name is documented (autodoc) somewhere in the book.
    """
    if app.builder.format != "html":
        return
    objects = app.env.get_domain("py").objects
    if not objects:
        return
    for literal in list(doctree.findall(nodes.literal)):
        if isinstance(literal.parent, (nodes.reference, addnodes.pending_xref)) \
                or literal.get("language"):
            continue
        match = _INLINE.match(literal.astext())
        if not match:
            continue
        prefix = match["prefix"]
        prefix = f"xentlib.{ALIASES[prefix]}" if prefix in ALIASES and not prefix.startswith("xentlib") \
            else prefix
        target = objects.get(f"{prefix}.{match['name']}")
        if target is None or target.docname == docname or not prefix.startswith("xentlib"):
            continue
        uri = app.builder.get_relative_uri(docname, target.docname) + "#" + target.node_id
        ref = nodes.reference("", "", internal=True, refuri=uri,
                              reftitle=f"{prefix}.{match['name']} in the API index")
        literal.replace_self(ref)
        ref += literal


def setup(app):
    app.setup_extension("sphinx.ext.autodoc")
    app.add_directive("xentlib-api-table", ApiTable)
    app.connect("doctree-resolved", _link_inline_code)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
