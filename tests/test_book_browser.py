"""The built book in headless Chromium: a smoke sweep, `ablation book`, then every task page.

Slow (a smoke sweep of tasks 2, 4 and 8, minutes on 2 cores). ``ABLATION_BROWSER_TASKS`` picks
the tasks (e.g. ``1-11``); ``ABLATION_BROWSER_RESULTS`` reuses an existing results folder.
``ABLATION_BROWSER_HTML=_build/html ABLATION_BROWSER_PROFILE=cpu`` checks a book that is
already built (e.g. by ``make book`` from the committed cpu results) instead of building one.
Screenshots of the index and a task page are saved under ``<build>/_build/screenshots/``.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ablation import book, notebooks, sweep
from ablation.report import SMOKE_WARNING
from ablation.rerun import repository
from ablation.tasks import TASKS, parse_tasks

pytestmark = [pytest.mark.slow, pytest.mark.browser]
PROFILE = os.environ.get("ABLATION_BROWSER_PROFILE", "smoke")  # the profile of the pages


def profile_marked(text: str) -> bool:
    """Smoke pages carry the smoke warning; others name their profile and have none."""
    if PROFILE == "smoke":
        return SMOKE_WARNING in text
    return SMOKE_WARNING not in text and f"profile <code>{PROFILE}</code>" in text

CHROMIUM = next((p for p in (os.environ.get("CHROMIUM"), "/usr/bin/chromium",
                             shutil.which("chromium"), shutil.which("chromium-browser"))
                 if p and Path(p).exists()), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--mute-audio"]
# After load: make every image eager, wait for it, then write naturalWidths into the DOM.
CHECK_SCRIPT = """<script>
window.addEventListener('load', async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(i => { i.loading = 'eager'; });
  await Promise.all(imgs.map(i => (i.complete ? Promise.resolve() : i.decode()).catch(() => 0)));
  const pre = document.createElement('pre');
  pre.id = 'ablation-img-check';
  pre.textContent = JSON.stringify(imgs.map(i => [(i.getAttribute('src') || '').slice(0, 60),
                                                   i.naturalWidth]));
  document.body.appendChild(pre);
});
</script>"""


def header_links(dom: str) -> dict[str, str]:
    """The header buttons' links, by their label ('source-repository-button', ...); buttons
    without one (launch buttons) under their own URL."""
    links = {}
    for tag in re.findall(r'<a\b[^>]*class="btn btn-sm[^"]*"[^>]*>', dom):
        href = html.unescape(re.search(r'href="([^"]*)"', tag).group(1))
        label = re.search(r'class="btn btn-sm btn-([a-z-]+)', tag)
        links[label.group(1) if label else href] = href
    return links


def chromium(profile_dir: Path, *args: str, timeout: int = 90) -> str:
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile_dir}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def loaded_dom(page: Path, profile_dir: Path) -> tuple[str, list]:
    """The page's DOM after load, and [src, naturalWidth] for every <img>."""
    check = page.with_name(page.stem + ".check.html")
    check.write_text(page.read_text(encoding="utf-8").replace("</body>",
                                                              CHECK_SCRIPT + "</body>"))
    dom = chromium(profile_dir, "--virtual-time-budget=20000", "--dump-dom", check.as_uri())
    check.unlink()
    match = re.search(r'<pre id="ablation-img-check"[^>]*>(.*?)</pre>', dom, re.S)
    assert match, f"{page.name}: the page did not finish loading"
    return dom, json.loads(html.unescape(match.group(1)))


def screenshot(profile_dir: Path, page: Path, out: Path, height: int) -> None:
    """Save a PNG of ``page`` (index.html only redirects, so pages are shot directly)."""
    chromium(profile_dir, f"--window-size=1280,{height}", "--virtual-time-budget=10000",
             f"--screenshot={out}", page.as_uri())
    assert out.exists() and out.stat().st_size > 0, f"no screenshot of {page.name}"


@pytest.fixture(scope="module")
def built_book(tmp_path_factory, data_dir) -> tuple[Path, list[int]]:
    if CHROMIUM is None:
        pytest.skip("headless Chromium not installed (apt-get install chromium)")
    # three tasks cover the page kinds (bicubic input, the shared baseline, a five-variant
    # task with a diagnostic) at a third of the sweep; ABLATION_BROWSER_TASKS=1-11 for all
    tasks = parse_tasks(os.environ.get("ABLATION_BROWSER_TASKS", "2,4,8"))
    if os.environ.get("ABLATION_BROWSER_HTML"):
        return Path(os.environ["ABLATION_BROWSER_HTML"]).resolve(), tasks
    root = tmp_path_factory.mktemp("site")
    results = os.environ.get("ABLATION_BROWSER_RESULTS") or str(root / "results")
    code = sweep.main(["--tasks", ",".join(map(str, tasks)), "--scales", "2", "--profile",
                       "smoke", "--results", results, "--data-dir", str(data_dir),
                       "--book-dir", str(root / "book")])
    assert code == 0, "the smoke sweep had failures"
    html_dir = book.build(root / "book")
    return html_dir, tasks


def test_index_and_every_task_page_in_chromium(built_book, tmp_path):
    html_dir, tasks = built_book
    shots = html_dir.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    profile_dir = tmp_path / "chromium"

    assert "book/intro.html" in (html_dir / "index.html").read_text()  # index redirects
    dom, images = loaded_dom(html_dir / "book" / "intro.html", profile_dir)
    assert "Small super-resolution CNNs" in dom and "Traceback" not in dom
    assert all(width > 0 for _, width in images), images
    url, branch = repository()
    links = header_links(dom)
    assert links.get("source-repository-button") == url, links
    assert links.get("source-edit-button") == f"{url}/edit/{branch}/book/intro.md", links
    assert links.get("source-issues-button", "").startswith(f"{url}/issues/new?"), links
    assert "mybinder.org" not in dom  # a Markdown page has nothing to launch
    screenshot(profile_dir, html_dir / "book" / "intro.html", shots / "index.png", 1600)

    for number in tasks:
        task = TASKS[number]
        page = html_dir / "book" / "tasks" / f"{task.key}-x2.html"
        dom, images = loaded_dom(page, profile_dir)
        assert "Traceback" not in dom, page.name
        assert profile_marked(dom), page.name
        assert dom.count('class="ablation-row ablation-variant"') == len(task.variants), \
            page.name
        assert len(images) >= 2, f"{page.name}: curves and visual comparison missing"
        assert all(width > 0 for _, width in images), (page.name, images)
        check_buttons_and_rerun(dom, task, url, branch)
    first = TASKS[tasks[0]]
    screenshot(profile_dir, html_dir / "book" / "tasks" / f"{first.key}-x2.html",
               shots / "task.png", 3000)


def check_buttons_and_rerun(dom: str, task, url: str, branch: str) -> None:
    """A task page links to the repository, its issues, the code that writes it, a Binder
    JupyterLab on its notebook, and ends with the commands that rerun it."""
    page = f"{task.key}-x2"
    links = header_links(dom)
    assert links.get("source-repository-button") == url, (page, links)
    assert links.get("source-edit-button") == f"{url}/edit/{branch}/ablation/notebooks.py", links
    assert links.get("source-issues-button", "").startswith(f"{url}/issues/new?"), links
    org_repo = url.removeprefix("https://github.com/")
    binder = (f"https://mybinder.org/v2/gh/{org_repo}/{branch}?urlpath=lab/tree/"
              f"book/tasks/{page}.ipynb")
    assert binder in links.values(), (page, links)
    rerun = dom.split('class="ablation-rerun"', 1)
    assert len(rerun) == 2, f"{page}: no rerun section"
    text = html.unescape(rerun[1])
    assert f"papermill notebooks/{task.key}.ipynb book/tasks/{page}.ipynb -r profile " \
        f"{PROFILE}" in text
    for variant in task.variants:
        assert f"ablation train --task {task.number} --variant {variant.name} --scale 2" in text
    assert "metrics.json" in text  # a link (runs in the checkout) or the run's local path


def test_no_page_of_the_book_shows_a_traceback(built_book):
    html_dir, _ = built_book
    pages = sorted((html_dir / "book").rglob("*.html"))
    assert len(pages) >= len(notebooks.pages())
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "Traceback" not in text, page
        placeholder = "has not been computed yet" in text  # scales the sweep didn't run
        assert profile_marked(text) or page.stem in book.STATIC_PAGES or placeholder, page


def test_built_pages_and_their_notebooks_name_no_machine_path(built_book):
    """No published page or downloadable .ipynb shows where the checkout or the home folder
    lives on the machine that built it (the sweep writes paths relative to the repository)."""
    html_dir, _ = built_book
    machine = [str(Path(__file__).resolve().parents[1]), str(Path.home())]
    machine = [m for m in machine if len(m) > 1]
    files = [p for p in html_dir.parent.rglob("*") if p.suffix in (".html", ".ipynb")]
    assert any(p.suffix == ".ipynb" for p in files) and any(p.suffix == ".html" for p in files)
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for prefix in machine:
            assert not re.search(re.escape(prefix) + r"(?=[/\"'\s<]|$)", text), (path, prefix)
