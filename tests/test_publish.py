"""Publishing the book: ghp-import into a local bare repository, the refusals, the Pages
workflow (actionlint), the book's repository/launch/citation configuration and Binder."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import jinja2
import nbformat
import pytest
import tomllib
import yaml

from ablation import book, notebooks, publish
from ablation.launch import write_launch_notebooks
from ablation.publish import PublishRefused
from ablation.rerun import repository
from ablation.sweep import Job, Settings, plan
from ablation.tasks import TASKS

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "book.yml"
GIT_ID = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
          "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True, env={**os.environ, **GIT_ID}).stdout


# --------------------------------------------------------------------------- fixtures


def write_page(book_dir: Path, page: notebooks.Page, profile: str = "cpu", error: str = "",
               runs: dict | None = None) -> None:
    """An executed page as the sweep leaves it: notebook metadata and stamp."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {page.title}")]
    nb.metadata["papermill"] = {"parameters": {"profile": profile}}
    nb.metadata["sr_ablation"] = {"sweep_error": error}
    out = page.output(book_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    stamp = {"page": page.name, "status": "failed" if error else "ok", "error": error,
             "runs": runs if runs is not None else {"task04/baseline/x2/seed0": "af177785"}}
    Job(page, {}, out).stamp.write_text(json.dumps(stamp))


@pytest.fixture
def site(tmp_path):
    """A clean source checkout, a bare 'remote', an executed cpu book and its built HTML."""
    src = tmp_path / "src"
    src.mkdir()
    git(src, "init", "-q", "-b", "main")
    (src / "README.md").write_text("study\n")
    git(src, "add", "README.md")
    git(src, "commit", "-q", "-m", "init")
    bare = tmp_path / "pages.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)

    book_dir = tmp_path / "site" / "book"
    for page in notebooks.pages():
        write_page(book_dir, page)
    html = tmp_path / "site" / "_build" / "html"
    names = ["index", *(p.docname for p in notebooks.pages()),
             *(f"book/{s}" for s in book.STATIC_PAGES)]
    for name in names:
        f = html / f"{name}.html"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"<html><body>{name}</body></html>")
    (html / "_static").mkdir()
    (html / "_static" / "styles.css").write_text("body {}")
    return dict(src=src, bare=bare, book=book_dir, html=html)


@pytest.fixture
def fake_build(monkeypatch, site):
    """jupyter-book is the browser test's business: here a build returns the built tree."""
    calls = []

    def build(book_dir, output=None, strict=True, quiet=True):
        calls.append(Path(book_dir))
        return site["html"]

    monkeypatch.setattr(publish, "build", build)
    for k, v in GIT_ID.items():
        monkeypatch.setenv(k, v)
    return calls


def remote_files(bare: Path, branch: str = "gh-pages") -> set[str]:
    return set(git(bare, "ls-tree", "-r", "--name-only", branch).split())


def has_branch(bare: Path, branch: str = "gh-pages") -> bool:
    return bool(git(bare, "branch", "--list", branch).strip())


# --------------------------------------------------------------------------- publishing


def test_publish_pushes_the_book_to_gh_pages_of_a_file_remote(site, fake_build):
    url = site["bare"].as_uri()  # file:///.../pages.git
    out = publish.publish(site["book"], remote=url, repo=site["src"], sweep=False)
    assert out == site["html"] and fake_build == [site["book"]]

    files = remote_files(site["bare"])
    assert {"index.html", ".nojekyll", "_static/styles.css"} <= files
    for t in TASKS.values():
        for s in t.scales:
            assert f"book/tasks/{t.key}-x{s}.html" in files
    assert {f"{p.docname}.html" for p in notebooks.pages()} <= files
    head = git(site["src"], "rev-parse", "HEAD").strip()
    assert head[:12] in git(site["bare"], "log", "-1", "--format=%s", "gh-pages")
    assert git(site["src"], "branch", "--show-current").strip() == "main"  # left untouched

    # publishing again replaces the site (forced push on top of the previous one)
    (site["html"] / "index.html").write_text("<html>second</html>")
    (site["html"] / "_static" / "styles.css").unlink()
    publish.publish(site["book"], remote=url, repo=site["src"], sweep=False)
    assert git(site["bare"], "show", "gh-pages:index.html") == "<html>second</html>"
    assert "_static/styles.css" not in remote_files(site["bare"])
    assert git(site["bare"], "rev-list", "--count", "gh-pages").strip() == "2"


def test_refuses_a_dirty_tree_before_anything_else(site, fake_build):
    (site["src"] / "notes.txt").write_text("untracked\n")
    with pytest.raises(PublishRefused, match=r"dirty tree .*notes\.txt.*commit or stash"):
        publish.publish(site["book"], remote=site["bare"].as_uri(), repo=site["src"],
                        sweep=False)
    (site["src"] / "notes.txt").unlink()
    (site["src"] / "README.md").write_text("changed\n")
    with pytest.raises(PublishRefused, match=r"1 changed or untracked: README\.md"):
        publish.clean_commit(site["src"])
    assert fake_build == [] and not has_branch(site["bare"])


def test_redrawn_figures_do_not_dirty_the_tree_but_changed_results_do(site):
    src = site["src"]
    figures, run = src / "results/cpu/figures", src / "results/cpu/task04/baseline/x2/seed0"
    figures.mkdir(parents=True)
    run.mkdir(parents=True)
    (figures / "task04-x2-curves.svg").write_text("<svg id='a'/>")
    (run / "metrics.json").write_text('{"psnr": 37.0}')
    git(src, "add", "results")
    git(src, "commit", "-q", "-m", "results")
    (figures / "task04-x2-curves.svg").write_text("<svg id='b'/>")  # what a sweep does
    (figures / "task05-x2-curves.svg").write_text("<svg/>")
    assert publish.clean_commit(src) == git(src, "rev-parse", "HEAD").strip()
    (run / "metrics.json").write_text('{"psnr": 38.0}')
    with pytest.raises(PublishRefused, match=r"results/cpu/task04/baseline/x2/seed0/metrics"):
        publish.clean_commit(src)


@pytest.mark.parametrize("kind", ["smoke", "failed", "unfinished", "placeholder", "missing"])
def test_refuses_a_book_with_a_bad_page(site, fake_build, kind):
    page = notebooks.task_pages([5], [2])[0]
    if kind == "smoke":
        write_page(site["book"], page, profile="smoke")
        want = r"1 smoke-profile page\(s\) \(task05-x2\)"
    elif kind == "failed":
        write_page(site["book"], page, error="RuntimeError: CUDA out of memory")
        want = r"1 failed page\(s\) \(task05-x2\)"
    elif kind == "unfinished":
        write_page(site["book"], page, runs={"task05/batchnorm/x2/seed0": None})
        want = r"1 failed page\(s\) \(task05-x2\)"
    elif kind == "placeholder":
        nbformat.write(nbformat.from_dict(notebooks.placeholder_notebook(page)),
                       page.output(site["book"]))
        want = r"1 page\(s\) never computed \(task05-x2\)"
    else:
        page.output(site["book"]).unlink()
        want = r"1 page\(s\) never computed \(task05-x2\)"
    with pytest.raises(PublishRefused, match=want) as err:
        publish.publish(site["book"], remote=site["bare"].as_uri(), repo=site["src"],
                        sweep=False)
    assert "\n" not in str(err.value) and "ablation sweep --profile cpu" in str(err.value)
    assert fake_build == [] and not has_branch(site["bare"])  # refused before building


def test_refusal_lists_every_kind_in_one_line(site):
    for page in notebooks.task_pages([1]):
        write_page(site["book"], page, profile="smoke")
    write_page(site["book"], book.RESULTS, error="KeyError: 'psnr'")
    with pytest.raises(PublishRefused) as err:
        publish.check_pages(site["book"])
    msg = str(err.value)
    assert "\n" not in msg
    assert "3 smoke-profile page(s) (task01-x2, task01-x3, task01-x4)" in msg
    assert "1 failed page(s) (results)" in msg


def test_refuses_html_without_a_page(site, fake_build):
    (site["html"] / "book" / "tasks" / "task07-x2.html").unlink()
    with pytest.raises(PublishRefused, match=r"1 page\(s\) missing \(book/tasks/task07-x2\)"):
        publish.publish(site["book"], remote=site["bare"].as_uri(), repo=site["src"],
                        sweep=False)
    assert not has_branch(site["bare"])


def test_a_push_failure_names_the_remote(site, fake_build, tmp_path):
    missing = (tmp_path / "nowhere.git").as_uri()
    with pytest.raises(publish.AblationError, match="ghp-import to file://.*nowhere.git failed"):
        publish.publish(site["book"], remote=missing, repo=site["src"], sweep=False)


def test_reuse_only_never_runs_a_missing_run(tmp_path, monkeypatch):
    """What keeps `--publish` and the Pages workflow from training: a missing run fails."""
    from ablation.errors import AblationError
    from ablation.runs import REUSE_ONLY_ENV, run_variant

    monkeypatch.setenv(REUSE_ONLY_ENV, "1")
    with pytest.raises(AblationError, match=f"no finished run .*{REUSE_ONLY_ENV}=1 forbids"):
        run_variant(0, "bicubic", 2, "smoke", results_dir=tmp_path)
    assert not list(tmp_path.rglob("*.json")) and not list(tmp_path.rglob("*.csv"))


def test_cli_check_refuses_a_smoke_book_in_one_line(site, capsys):
    for page in notebooks.pages():
        write_page(site["book"], page, profile="smoke")
    code = publish.main(["--check", "--book-dir", str(site["book"])])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err
    assert f"{len(notebooks.pages())} smoke-profile page(s)" in err


# --------------------------------------------------------------------------- the workflow


def actionlint() -> str:
    exe = Path(sys.executable).with_name("actionlint")
    assert exe.exists(), "actionlint not installed: pip install -e '.[dev]'"
    return str(exe)


def test_actionlint_passes_on_the_pages_workflow():
    proc = subprocess.run([actionlint(), "-no-color", str(WORKFLOW)], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""


def test_actionlint_would_catch_a_broken_workflow(tmp_path):
    broken = WORKFLOW.read_text().replace("pages: write", "pages: writ")
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    f = tmp_path / ".github" / "workflows" / "book.yml"
    f.write_text(broken)
    proc = subprocess.run([actionlint(), "-no-color", str(f)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 1 and '"writ" is invalid as permission' in proc.stdout


def test_workflow_builds_from_committed_results_and_deploys_to_pages():
    text = WORKFLOW.read_text()
    wf = yaml.safe_load(text)
    on = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads the key `on` as True
    assert on["push"]["branches"] == ["main"]
    assert wf["permissions"]["pages"] == "write" and wf["permissions"]["id-token"] == "write"
    build, deploy = wf["jobs"]["build"], wf["jobs"]["deploy"]
    assert build["env"]["ABLATION_REUSE_ONLY"] == "1"  # never trains
    runs = "\n".join(s.get("run", "") for s in build["steps"])
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs
    assert 'pip install -e ".[book]"' in runs
    assert "ablation data fetch benchmark" in runs and "--mirror" not in runs  # online
    assert "ablation data fetch div2k" not in runs
    assert "ablation sweep --tasks 1-11 --scales 2,3,4 --profile cpu" in runs
    assert "ablation book --check --output ." in runs
    setup = next(s for s in build["steps"] if "setup-python" in s.get("uses", ""))
    assert setup["with"]["python-version"] == "3.11"
    upload = next(s for s in build["steps"] if "upload-pages-artifact" in s.get("uses", ""))
    assert upload["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert "actions/deploy-pages@" in deploy["steps"][0]["uses"]
    # every action pinned to a full commit SHA, with the release in a comment
    uses = re.findall(r"uses: (\S+)(.*)", text)
    assert len(uses) == 5
    for ref, comment in uses:
        assert re.fullmatch(r"actions/[a-z-]+@[0-9a-f]{40}", ref), ref
        assert re.fullmatch(r" # v\d+\.\d+\.\d+", comment), (ref, comment)


def test_workflow_points_the_book_at_the_repository_it_runs_in(tmp_path):
    wf = yaml.safe_load(WORKFLOW.read_text())
    step = next(s for s in wf["jobs"]["build"]["steps"]
                if s.get("name") == "Point the book at this repository")
    (tmp_path / "_config.yml").write_text((REPO / "_config.yml").read_text())
    subprocess.run(["bash", "-euo", "pipefail", "-c", step["run"]], cwd=tmp_path, check=True,
                   capture_output=True, env={**os.environ, "REPO_URL":
                                             "https://github.com/someone/sr-ablation-fork"})
    assert repository(tmp_path) == ("https://github.com/someone/sr-ablation-fork", "main")
    before = yaml.safe_load((REPO / "_config.yml").read_text())
    after = yaml.safe_load((tmp_path / "_config.yml").read_text())
    before["repository"]["url"] = after["repository"]["url"]
    assert after == before  # nothing else changed


# --------------------------------------------------------------------------- book config


def test_config_has_repository_and_launch_buttons():
    cfg = yaml.safe_load((REPO / "_config.yml").read_text())
    url, branch = repository()
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url) and branch == "main"
    html = cfg["html"]
    assert html["use_repository_button"] and html["use_issues_button"]
    assert html["use_edit_page_button"]
    launch = cfg["launch_buttons"]
    assert launch["binderhub_url"] == "https://mybinder.org"
    assert launch["notebook_interface"] == "jupyterlab"


@pytest.mark.parametrize("page, edits", [("book/tasks/task04-x2.ipynb", "ablation/notebooks.py"),
                                          ("book/pages/results.ipynb", "ablation/notebooks.py"),
                                          ("book/intro.md", "book/intro.md")])
def test_edit_button_edits_the_source_of_the_page(page, edits):
    cfg = yaml.safe_load((REPO / "_config.yml").read_text())
    template = cfg["sphinx"]["config"]["html_context"]["edit_page_url_template"]
    rendered = jinja2.Template(template).render(
        github_url="https://github.com", github_user="me", github_repo="sr", github_version="main",
        doc_path="", file_name=page)
    assert rendered == f"https://github.com/me/sr/edit/main/{edits}"
    assert (REPO / edits).exists()


def test_citation_cff_is_valid_and_agrees_with_the_book():
    """CFF 1.2.0: required keys, only keys of the schema, right types; same facts as the
    book's config and the package."""
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    allowed = {"abstract", "authors", "cff-version", "commit", "contact", "date-released",
               "doi", "identifiers", "keywords", "license", "license-url", "message",
               "preferred-citation", "references", "repository", "repository-artifact",
               "repository-code", "title", "type", "url", "version"}
    assert {"cff-version", "message", "title", "authors"} <= set(cff) <= allowed
    assert cff["cff-version"] == "1.2.0"
    assert cff["type"] in ("software", "dataset")
    assert isinstance(cff["message"], str) and cff["message"].strip()
    assert cff["authors"] and all(
        isinstance(a, dict) and (a.get("name") or a.get("family-names") or
                                 a.get("given-names")) for a in cff["authors"])
    assert isinstance(cff["version"], str) and isinstance(cff["keywords"], list)
    cfg = yaml.safe_load((REPO / "_config.yml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert cff["title"] == cfg["title"]
    assert [a["name"] for a in cff["authors"]] == [cfg["author"]]
    assert cff["version"] == project["version"]
    assert cff["license"] == project["license"]["text"]


# --------------------------------------------------------------------------- Binder


def test_binder_environment_installs_cpu_torch_and_the_package():
    reqs = [line.strip() for line in (REPO / "binder" / "requirements.txt").read_text()
            .splitlines() if line.strip() and not line.startswith("#")]
    assert reqs == ["--extra-index-url https://download.pytorch.org/whl/cpu", "-e .[book]"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if str(d).startswith("python="))
    assert (REPO / "binder" / "runtime.txt").read_text().strip() == \
        python.replace("python=", "python-")
    post = REPO / "binder" / "postBuild"
    assert post.stat().st_mode & stat.S_IXUSR
    assert "write_launch_notebooks('book')" in post.read_text()


def test_launch_notebooks_are_the_pages_the_sweep_would_execute(tmp_path):
    book_dir = tmp_path / "book"
    done = notebooks.task_pages([4])[0].output(book_dir)
    done.parent.mkdir(parents=True)
    done.write_text("executed")  # an executed page is kept
    written = write_launch_notebooks(book_dir)
    assert done.read_text() == "executed"
    jobs = plan(Settings(tasks=list(TASKS), scales=None, profile="cpu", seeds=[0],
                         results_dir=Path("results").resolve(), data_dir=None,
                         book_dir=book_dir.resolve()))
    assert sorted(written) == sorted(j.output for j in jobs if j.output != done)
    job = next(j for j in jobs if j.page.name == "task01-x3")
    nb = nbformat.read(job.output, as_version=4)
    assert nb.metadata["papermill"]["parameters"] == job.params
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "scales = [3]" in injected[0].source
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
