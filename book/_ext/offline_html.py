"""Small build-time guards that keep the HTML book self-contained and quiet in a browser.

* ``mathjax_path`` must point inside the book (the vendored copy in
  ``book/_mathjax``): a CDN URL is a build warning (fatal with ``-W``), because
  offline readers would see raw TeX.
* sphinx-book-theme's colour-mode script logs a console error ("Got invalid
  theme mode") on a reader's first visit unless a default mode is configured;
  ``html_context['default_mode']`` is set to ``auto`` (follow the reader's system) if the book
  does not choose one.
* sphinx-thebe 0.3.1 registers its inline ``const THEBE_JS_URL = ...`` script
  twice (once with filename None, once ""), so pages got it twice and the browser raised
  "Identifier 'THEBE_JS_URL' has already been declared"; duplicate script
  entries are dropped from every page.
"""
from __future__ import annotations

from sphinx.util import logging

LOGGER = logging.getLogger(__name__)


def _config_inited(app, config):
    context = dict(config.html_context or {})
    context.setdefault("default_mode", "auto")  # pydata-sphinx-theme reads it from html_context
    config.html_context = context
    path = str(getattr(config, "mathjax_path", "") or "")
    if "://" in path or path.startswith("//"):
        LOGGER.warning("mathjax_path=%r loads MathJax from the network; offline readers would see "
                       "raw TeX. Point it at the vendored copy (book/_mathjax).", path,
                       type="offline_html", subtype="mathjax")


def _script_key(js):
    attributes = getattr(js, "attributes", {}) or {}
    filename = getattr(js, "filename", js) or ""  # an inline script may come as None or ""
    return str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items()))


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        key = _script_key(js)
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def setup(app):
    app.connect("config-inited", _config_inited, priority=900)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
