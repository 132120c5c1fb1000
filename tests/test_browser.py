"""The built HTML book in a real browser, with no network.

1. Builds the book from the notebooks' STORED outputs (``execute_notebooks: off``,
   ``-W -n``) into a temporary directory; nbval checks elsewhere that the stored
   outputs are what the code produces, so nothing is re-executed here.
2. Installs Debian's ``chromium`` if it is missing (``apt-get``, as root); the
   test is skipped, saying so, only when apt-get is not available at all.
3. Serves the HTML on 127.0.0.1 inside a fresh network namespace
   (``unshare -n``: only a loopback interface exists, so nothing can leave the
   machine) and loads every page of ``_toc.yml`` in headless Chromium driven by
   Playwright (``executable_path=/usr/bin/chromium``; Playwright's own browser
   downloads are never used).
4. Asserts per page: math typeset by the vendored MathJax (every ``.math``
   element holds an ``mjx-container``, no raw ``$$``, ``\\(`` or ``\\[`` left in
   the text), every image loaded (``naturalWidth > 0``), no console error, no
   failed or non-local request; framework tabs: one click switches every
   tab-set on the page, and the choice is the default on the next page.
   One chapter is also opened straight from disk (``file://``), and the search
   page there lists hits with their summaries.
   At 1280 px nothing in the main column is cut off: no element clips its
   content (``scrollWidth > clientWidth`` with hidden overflow) and nothing spills
   past the column; wide tables, code and equations scroll inside their own box.
   At 390 px no page scrolls sideways.
5. Navigation at 390, 900 and 1280 px: the table of contents is reachable (at
   desktop width in the sidebar, below it behind the toggle, which must open it)
   and a click on an entry opens that page; below desktop width the page's
   contents open from their toggle too.
6. Saves a full-page screenshot (JPEG) of every page at 1280 px, and one per
   width with the navigation open, in ``test-artifacts/``.

Run alone: ``.venv/bin/python -m pytest -q tests/test_browser.py``.
This file is also the script that runs inside the namespace (``__main__``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
BUILD_TIMEOUT = 900
BROWSER_TIMEOUT = 600
WIDTHS = (1280, 900, 390)
#: pages whose navigation is exercised at every width: the landing page, a chapter, a 4.x page
NAV_PAGES = ("book/index", "book/02_core_concepts", "book/04_examples/02_label_smoothing")
#: the build machine's paths, which a reader must never see
MACHINE_PATH = re.compile(r"site-packages|/work/|/root/|/home/|\.venv|/tmp/ipykernel")


def toc_docnames(toc_path=ROOT / "_toc.yml"):
    """Every page of the table of contents, root first, in reading order."""
    toc = yaml.safe_load(toc_path.read_text(encoding="utf8"))
    names = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                names.append(entry["file"])
            for key in ("chapters", "sections", "parts"):
                walk(entry.get(key))
    walk(toc.get("chapters"))
    walk(toc.get("parts"))
    return [str(Path(n).with_suffix("")) if Path(n).suffix in (".md", ".ipynb") else n
            for n in names]


PAGES = toc_docnames()


# ---- set-up: chromium, build -----------------------------------------------------

def ensure_chromium():
    if os.path.exists(CHROMIUM):
        return
    if shutil.which("apt-get") is None:
        pytest.skip("Debian's chromium is not installed and apt-get is not available: "
                    "browser test skipped (install chromium to run it)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and os.path.exists(CHROMIUM), \
        f"apt-get install chromium failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


def build_book(out_dir: Path) -> Path:
    """Build the HTML book from stored outputs into ``out_dir``; return the html folder."""
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        from stored_outputs_config import stored_outputs_config  # execute_notebooks: off
    finally:
        sys.path.pop(0)
    cfg = stored_outputs_config(out_dir / "_config.yml")
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(ROOT), "--config", str(cfg), "--toc", str(ROOT / "_toc.yml"),
           "--path-output", str(out_dir), "-W", "-n", "--keep-going"]
    env = dict(os.environ, PYTHONHASHSEED="0", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=BUILD_TIMEOUT)
    log = done.stdout + done.stderr
    (out_dir / "build.log").write_text(log, encoding="utf8")
    warnings = [line for line in log.splitlines()
                if ("WARNING" in line or "ERROR" in line) and "absl" not in line]
    assert done.returncode == 0, \
        "jupyter-book build -W -n failed:\n" + "\n".join(warnings[:40] or log.splitlines()[-40:])
    return out_dir / "_build" / "html"


def network_isolation_available():
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    ensure_chromium()
    html = build_book(tmp_path_factory.mktemp("book"))
    ARTIFACTS.mkdir(exist_ok=True)
    for old in [*ARTIFACTS.glob("*.png"), *ARTIFACTS.glob("*.jpg")]:
        old.unlink()
    results = tmp_path_factory.mktemp("browser") / "results.json"
    isolated = network_isolation_available()
    cmd = [sys.executable, __file__, str(html), str(results), str(ARTIFACTS), *PAGES]
    if isolated:
        cmd = ["unshare", "-n", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=BROWSER_TIMEOUT)
    assert done.returncode == 0, f"browser run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    data = json.loads(results.read_text(encoding="utf8"))
    shutil.copy(results, ARTIFACTS / "browser-results.json")
    data["isolated"] = isolated
    data["html"] = html
    return data


# ---- the tests -----------------------------------------------------------------------

def test_tab_grouping_rules():
    """Adjacent tagged cells group into one tab-set; a repeat starts a new one; lone cells stay."""
    from docutils import nodes
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        import framework_tabs as ft
    finally:
        sys.path.pop(0)

    def cell(fw):
        classes = ["cell"] + ([f"tag_tab-{fw}"] if fw else [])
        return nodes.container("", nb_element="cell_code", classes=classes)
    kids = [cell("tensorflow"), cell("pytorch"), cell("numpy"), cell("pytorch"),
            cell("tensorflow"), nodes.paragraph(), cell("numpy"), cell(None)]
    runs = ft.group_runs(kids)
    shape = [[fw for fw, _ in r] if isinstance(r, list) else type(r).__name__ for r in runs]
    assert shape == [["tensorflow", "pytorch", "numpy"], ["pytorch", "tensorflow"], "paragraph",
                     ["numpy"], "container"]
    tab_set = ft._tab_set(runs[0])
    labels = [item.children[0]["sync_id"] for item in tab_set.children]
    assert labels == ["pytorch", "tensorflow", "numpy"]  # canonical order, whatever the cells' order
    assert {item.children[0]["sync_group"] for item in tab_set.children} == {"framework"}


def test_pages_come_from_the_toc():
    assert PAGES and PAGES[0] == "book/index"


def test_served_without_network(site):
    """Inside ``unshare -n`` there is no route off the machine (only if unshare is allowed)."""
    if not site["isolated"]:
        pytest.skip("unshare -n not permitted here: only the request monitor guards the network")
    assert site["interfaces"] == ["lo"], site["interfaces"]


def test_no_remote_scripts_or_styles_in_html(site):
    """Static check of every built page: nothing is loaded from a CDN."""
    import re
    remote = re.compile(r'(?:src|href)="(?:https?:)?//')
    tags = re.compile(r'<script\b[^>]*>|<link\b[^>]*rel="(?:stylesheet|preload|icon|modulepreload)"[^>]*>')
    bad = {}
    for page in Path(site["html"]).rglob("*.html"):
        for tag in tags.findall(page.read_text(encoding="utf8")):
            if remote.search(tag):
                bad.setdefault(str(page.relative_to(site["html"])), []).append(tag)
    assert not bad, bad


def test_book_furniture(site):
    """Download (.ipynb) and search on every page; no button leads to a repository that is not set.

    ``repository.url`` is empty in ``_config.yml`` (no public home yet), so no launch
    (Binder, Colab), edit, issue or repository button may be drawn, and the landing
    page has no clone line; the browser's print entry is not offered as ".pdf".
    """
    html = Path(site["html"])
    assert (html / "search.html").is_file() and (html / "searchindex.js").is_file()
    problems = {}
    for docname in PAGES:
        text = (html / f"{docname}.html").read_text(encoding="utf8")
        wanted = [f"_sources/{docname}.ipynb"] if (ROOT / f"{docname}.ipynb").is_file() else []
        unwanted = ["btn-source-edit-button", "btn-source-issues-button",
                    "btn-source-repository-button", "mybinder.org", "colab.research.google.com",
                    "git clone", "download-pdf-button",
                    "pst-navbar-icon sidebar-toggle primary-toggle"]  # the theme's empty header bar
        found = [f"missing {w}" for w in wanted if w not in text]
        found += [f"has {u}" for u in unwanted if u in text]
        if found:
            problems[docname] = found
    assert not problems, problems


@pytest.mark.parametrize("docname", PAGES)
def test_page(site, docname):
    r = site["pages"][docname]
    assert r["status"] == 200, f"{docname}: HTTP {r['status']}"
    assert not r["outside_requests"], f"{docname}: requests leaving 127.0.0.1: {r['outside_requests']}"
    assert not r["failed"], f"{docname}: failed requests: {r['failed']}"
    assert not r["console_errors"], f"{docname}: console errors: {r['console_errors']}"
    assert not r["broken_images"], f"{docname}: images not loaded: {r['broken_images']}"
    assert r["math_nodes"] == r["math_typeset"], \
        f"{docname}: {r['math_nodes'] - r['math_typeset']} of {r['math_nodes']} math elements not typeset"
    if r["math_nodes"]:
        assert r["mjx"] >= r["math_nodes"] and r["mathjax_loaded"]
    assert not r["raw_tex"], f"{docname}: raw TeX left in the page: {r['raw_tex']}"
    for check in r["tab_checks"]:
        assert check["switched"] == check["tab_sets"], \
            f"{docname}: clicking {check['framework']} switched {check['switched']} of " \
            f"{check['tab_sets']} tab-sets that have it"
    assert Path(r["screenshot"]).is_file()


def test_framework_tabs_exist_and_persist(site):
    pages = [p for p in site["pages"].values() if p["tab_sets"]]
    if not pages:
        pytest.skip("no chapter in _toc.yml has framework tabs yet")
    for p in pages:
        assert p["tab_checks"], f"{p['docname']}: tab-sets present but never clicked"
    restored = [p for p in pages if p["restored"] is not None]
    for p in restored:
        assert p["restored"]["ok"], f"{p['docname']}: {p['restored']}"


def test_opens_from_disk(site):
    r = site["file_url"]
    if r is None:
        pytest.skip("no page with math to open from disk")
    assert r["math_nodes"] == r["math_typeset"], r
    assert not r["console_errors"], r["console_errors"]
    assert not r["broken_images"], r["broken_images"]
    assert r["search_hits"] and r["search_summaries"] >= min(r["search_hits"], 5), \
        f"search from disk: {r['search_hits']} hits, {r['search_summaries']} with a summary"


@pytest.mark.parametrize("docname", PAGES)
def test_nothing_cut_off_at_desktop_width(site, docname):
    """1280 px: nothing clipped or spilling out of the main column; wide things scroll in a box."""
    r = site["pages"][docname]["layout"]
    assert not r["clipped"], f"{docname}: content cut off: {r['clipped'][:5]}"
    assert not r["spills"], f"{docname}: content past the column's right edge: {r['spills'][:5]}"
    assert r["page_overflow"] <= 0, f"{docname}: the page scrolls sideways by {r['page_overflow']} px"


@pytest.mark.parametrize("docname", PAGES)
def test_no_sideways_scrolling_on_a_phone(site, docname):
    r = site["phone"][docname]
    assert r["page_overflow"] <= 0, \
        f"{docname} at 390 px: the page scrolls sideways by {r['page_overflow']} px: {r['widest'][:3]}"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("docname", NAV_PAGES)
def test_navigation(site, docname, width):
    """The table of contents is reachable and clickable at every width."""
    r = site["nav"][f"{width}:{docname}"]
    if width >= 1200:
        assert r["toc_visible_before"], f"{docname} at {width} px: no table of contents in view"
    else:
        assert not r["toc_visible_before"], f"{docname} at {width} px: sidebar expected collapsed"
        assert r["toggle"], f"{docname} at {width} px: no visible sidebar toggle"
    assert r["toc_visible_after"], f"{docname} at {width} px: the toggle did not open the contents"
    assert r["navigated"], f"{docname} at {width} px: clicking {r['target']} went to {r['url']}"
    if width < 1200 and r["page_toc"] is not None:
        assert r["page_toc"], f"{docname} at {width} px: the page's contents did not open"
    assert Path(r["screenshot"]).is_file()


def test_no_machine_paths_in_html(site):
    """No page names the build machine (site-packages, .venv, /work/, /root/)."""
    found = {}
    for docname in PAGES:
        text = (Path(site["html"]) / f"{docname}.html").read_text(encoding="utf8")
        hits = [text[max(0, m.start() - 60):m.end() + 20] for m in MACHINE_PATH.finditer(text)]
        if hits:
            found[docname] = hits[:3]
    assert not found, found


# ---- the browser run (inside the network namespace) -------------------------------------

PAGE_PROBE = r"""
async () => {
  const out = {};
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
    out.mathjax_loaded = true;
  } else { out.mathjax_loaded = false; }
  // images: make lazy ones eager and wait for every image to settle
  const imgs = Array.from(document.images);
  imgs.forEach(i => { i.loading = "eager"; });
  await Promise.all(imgs.map(i => i.complete ? null :
      new Promise(r => { i.addEventListener("load", r); i.addEventListener("error", r);
                         setTimeout(r, 10000); })));
  out.broken_images = imgs.filter(i => !(i.complete && i.naturalWidth > 0))
                          .map(i => i.getAttribute("src"));
  const maths = Array.from(document.querySelectorAll(".math"));
  out.math_nodes = maths.length;
  out.math_typeset = maths.filter(m => m.querySelector("mjx-container")).length;
  out.mjx = document.querySelectorAll("mjx-container").length;
  // raw TeX: text outside code, outside MathJax output
  const main = document.querySelector("main") || document.body;
  const clone = main.cloneNode(true);
  clone.querySelectorAll("pre, code, mjx-container, script, style, .highlight, textarea")
       .forEach(n => n.remove());
  const text = clone.textContent;
  out.raw_tex = [];
  for (const pat of ["$$", "\\(", "\\[", "\\begin{", "\\frac", "\\sum"]) {
    const k = text.indexOf(pat);
    if (k >= 0) out.raw_tex.push(text.slice(Math.max(0, k - 40), k + 60).replace(/\s+/g, " "));
  }
  out.tab_sets = document.querySelectorAll(".sd-tab-set.framework-tabs").length;
  return out;
}
"""

LAYOUT_PROBE = r"""
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const article = document.querySelector("article.bd-article") || document.querySelector("main");
  const edge = article.getBoundingClientRect().right + 1;
  const overflowX = (el) => getComputedStyle(el).overflowX;
  const boxed = (el) => {  // inside a box that scrolls or clips (below the article)
    for (let a = el.parentElement; a && a !== article; a = a.parentElement)
      if (overflowX(a) !== "visible") return true;
    return false;
  };
  const describe = (el) => {
    const section = el.closest("section[id]");
    const text = (el.textContent || "").trim().replace(/\s+/g, " ").slice(0, 60);
    return `${el.tagName.toLowerCase()}.${String(el.className).trim().split(/\s+/).slice(0, 2).join(".")}`
         + ` in #${section ? section.id : "?"} (${el.scrollWidth} > ${el.clientWidth}): ${text}`;
  };
  const out = {clipped: [], spills: [], scrolling: 0,
               page_overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth};
  for (const el of article.querySelectorAll("*")) {
    if (el.closest("mjx-assistive-mml, .sd-tab-set > input, script, style")) continue;
    if (el.tagName.startsWith("MJX-") && el.tagName !== "MJX-CONTAINER") continue;  // glyph parts
    const rect = el.getBoundingClientRect();
    if (!rect.width || !rect.height) continue;  // not displayed (a closed tab, a folded solution)
    const ox = overflowX(el);
    if (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0) {
      if (ox === "auto" || ox === "scroll") out.scrolling += 1;
      else if (ox === "hidden" || ox === "clip") out.clipped.push(describe(el));
    }
    if (rect.right > edge && !boxed(el)) out.spills.push(describe(el));
  }
  return out;
}
"""

PHONE_PROBE = r"""
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const width = document.documentElement.clientWidth;
  const widest = Array.from(document.querySelectorAll("main *"))
    .filter(el => el.getBoundingClientRect().right > width + 1)
    .map(el => `${el.tagName.toLowerCase()}.${String(el.className).split(" ")[0]}: `
               + (el.textContent || "").trim().slice(0, 40));
  return {page_overflow: document.documentElement.scrollWidth - width, widest: widest.slice(0, 5)};
}
"""


CHECKED = r"""
() => Array.from(document.querySelectorAll(".sd-tab-set.framework-tabs")).map(set => {
  const ids = Array.from(set.querySelectorAll(":scope > label")).map(l => l.dataset.syncId);
  const inputs = Array.from(set.querySelectorAll(":scope > input"));
  const k = inputs.findIndex(i => i.checked);
  return {ids: ids, checked: k >= 0 ? ids[k] : null};
})
"""


def check_navigation(page, base, docname, width, artifacts):
    """Open the table of contents (the toggle below desktop width) and click another chapter."""
    page.goto(base + docname + ".html", wait_until="load")
    links = page.locator(".bd-sidebar-primary .bd-sidenav a.reference.internal")
    r = {"toc_visible_before": links.first.is_visible(), "toggle": None, "page_toc": None}
    if not r["toc_visible_before"]:
        toggle = page.locator(".primary-toggle:visible")
        r["toggle"] = toggle.count() > 0
        if r["toggle"]:
            toggle.first.click()
            page.wait_for_timeout(300)
    r["toc_visible_after"] = links.first.is_visible()
    shot = Path(artifacts) / f"nav-{width}__{docname.replace('/', '__')}.jpg"
    page.screenshot(path=str(shot), type="jpeg", quality=80)
    r["screenshot"] = str(shot)
    target = "book/appendix/glossary" if docname != "book/appendix/glossary" else "book/index"
    r["target"] = target
    marked = page.evaluate("""(target) => {
      const a = Array.from(document.querySelectorAll(".bd-sidebar-primary .bd-sidenav a"))
        .find(a => a.href.endsWith("/" + target + ".html") && a.getClientRects().length);
      if (a) a.setAttribute("data-test-target", "1");
      return Boolean(a);
    }""", target)
    r["navigated"] = False
    r["url"] = page.url
    if marked:
        page.locator("[data-test-target]").click()  # a real click: fails if covered or hidden
        page.wait_for_load_state("load")
        r["url"] = page.url
        r["navigated"] = page.url.split("#")[0].endswith("/" + target + ".html")
    if width < 1200:  # the page's own contents (secondary sidebar) behind the other toggle
        page.goto(base + docname + ".html", wait_until="load")
        toggle = page.locator(".secondary-toggle:visible")
        entries = page.locator(".bd-sidebar-secondary nav.page-toc a")
        if toggle.count() and entries.count():
            toggle.first.click()
            page.wait_for_timeout(300)
            r["page_toc"] = entries.first.is_visible()
    page.close()
    return r


def run_browser(html_dir, results_path, artifacts, pages):
    import functools
    import http.server
    import threading
    import time

    from playwright.sync_api import sync_playwright

    if subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True).returncode:
        pass  # not in a fresh namespace: lo is already up
    # /proc/net/dev lists the interfaces of this process's network namespace
    lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    interfaces = sorted(line.split(":")[0].strip() for line in lines)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=html_dir))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    results = {"interfaces": interfaces, "pages": {}, "file_url": None}
    local = ("data:", "blob:", "about:", base)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-dev-shm-usage"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        events = {}

        def reset():
            events.update(requests=[], console_errors=[], failed=[])
        reset()
        page.on("request", lambda r: events["requests"].append(r.url))
        page.on("console", lambda m: m.type == "error" and events["console_errors"].append(
            f"{m.text} @ {m.location.get('url', '')}"))
        page.on("pageerror", lambda e: events["console_errors"].append(f"uncaught: {e}"))
        page.on("requestfailed", lambda r: events["failed"].append(f"{r.url}: {r.failure}"))
        page.on("response", lambda r: r.status >= 400 and events["failed"].append(
            f"{r.url}: HTTP {r.status}"))

        preference = []  # most recent choice first
        math_page = None
        for n, docname in enumerate(pages):
            started = time.monotonic()
            reset()
            response = page.goto(base + docname + ".html", wait_until="load")
            r = page.evaluate(PAGE_PROBE)
            r["layout"] = page.evaluate(LAYOUT_PROBE)
            r["docname"] = docname
            r["status"] = response.status if response else None
            if r["math_nodes"] and math_page is None:
                math_page = docname
            # tabs: was the previous page's choice restored here?
            sets = page.evaluate(CHECKED)
            # each tab-set opens on the most recent choice it has (book/_ext/static/reader.js)
            r["restored"] = None
            if sets and preference:
                expected = [next((fw for fw in preference if fw in s["ids"]), s["ids"][0])
                            for s in sets]
                got = [s["checked"] for s in sets]
                r["restored"] = {"ok": expected == got, "expected": expected, "got": got,
                                 "preference": list(preference)}
            # tabs: click each framework in turn, all tab-sets having it must follow
            r["tab_checks"] = []
            frameworks = sorted({i for s in sets for i in s["ids"]},
                                key=["pytorch", "tensorflow", "numpy"].index)
            if frameworks:
                order = frameworks[1:] + frameworks[:1]
                order = order[n % len(order):] + order[:n % len(order)]
                for k, fw in enumerate(order):
                    selector = f".sd-tab-set.framework-tabs > label[data-sync-id='{fw}']"
                    if k == 0:  # a real mouse click on the first one
                        label = page.locator(selector).first
                        label.scroll_into_view_if_needed()
                        label.click()
                    else:  # DOM clicks for the others (same event path, much faster)
                        page.evaluate(f"document.querySelector(\"{selector}\").click()")
                    after = page.evaluate(CHECKED)
                    having = [s for s in after if fw in s["ids"]]
                    r["tab_checks"].append({
                        "framework": fw, "tab_sets": len(having),
                        "switched": sum(s["checked"] == fw for s in having)})
                    preference = [fw] + [p for p in preference if p != fw]
                page.evaluate("window.scrollTo(0, 0)")
            shot = Path(artifacts) / (docname.replace("/", "__") + ".jpg")
            page.screenshot(path=str(shot), full_page=True, type="jpeg", quality=80)
            r["screenshot"] = str(shot)
            r["outside_requests"] = sorted({u for u in events["requests"] if not u.startswith(local)})
            r["console_errors"] = list(events["console_errors"])
            r["failed"] = list(events["failed"])
            r["seconds"] = round(time.monotonic() - started, 1)
            results["pages"][docname] = r

        if math_page is not None:  # a reader opening the files straight from disk
            reset()
            disk = context.new_page()
            disk.on("console", lambda m: m.type == "error" and events["console_errors"].append(m.text))
            disk.on("pageerror", lambda e: events["console_errors"].append(f"uncaught: {e}"))
            disk.goto(Path(html_dir, math_page + ".html").as_uri(), wait_until="load")
            r = disk.evaluate(PAGE_PROBE)
            r["console_errors"] = list(events["console_errors"])
            r["docname"] = math_page
            disk.screenshot(path=str(Path(artifacts) / ("file__" + math_page.replace("/", "__") + ".jpg")),
                            type="jpeg", quality=80)
            # search from disk: hits come with their summaries (book/_ext/static/reader-search.js)
            disk.goto(Path(html_dir, "search.html").as_uri() + "?q=entropy", wait_until="load")
            try:
                disk.wait_for_selector("#search-results li p.context", timeout=20000)
                disk.wait_for_timeout(2000)  # hits are added one by one
            except Exception:
                pass
            r["search_hits"] = disk.locator("#search-results li").count()
            r["search_summaries"] = disk.locator("#search-results li p.context").count()
            disk.screenshot(path=str(Path(artifacts) / "file__search.jpg"), type="jpeg", quality=80)
            results["file_url"] = r
        results["phone"] = {}
        phone = browser.new_context(viewport={"width": 390, "height": 800}).new_page()
        for docname in pages:
            phone.goto(base + docname + ".html", wait_until="load")
            results["phone"][docname] = phone.evaluate(PHONE_PROBE)
        results["nav"] = {}
        for width in WIDTHS:
            context = browser.new_context(viewport={"width": width, "height": 800})
            for docname in NAV_PAGES:
                results["nav"][f"{width}:{docname}"] = check_navigation(
                    context.new_page(), base, docname, width, artifacts)
            context.close()
        browser.close()
    server.shutdown()
    Path(results_path).write_text(json.dumps(results, indent=1), encoding="utf8")


if __name__ == "__main__":
    run_browser(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
