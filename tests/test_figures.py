"""Figures for a write-up: one saving helper (PNG, SVG with editable text, PDF; byte-identical
across redraws), ``style``/``figsize``/``formats``/``out_dir`` on every figure call, the cost
figure's labels placed without overlap, and the book's restyle recipe run as printed."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import fake_runs
import nbformat
import pandas as pd
import pytest

from ablation import notebooks, report
from ablation.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "results"


def line_figure(style=None, figsize=None):
    with report.figure_style(style):
        fig = report.new_figure(3, 2, figsize)
        ax = fig.subplots()
        ax.plot([0, 1, 2], [1, 0, 2], label="a line")
        ax.legend()
        fig.suptitle("a title")
    return fig


def test_save_figure_writes_each_format_byte_identical_across_redraws(tmp_path):
    first = report.save_figure(line_figure(), tmp_path / "a" / "demo", ("png", "svg", "pdf"))
    second = report.save_figure(line_figure(), tmp_path / "b" / "demo", ("png", "svg", "pdf"))
    assert [p.name for p in first] == ["demo.png", "demo.svg", "demo.pdf"]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert first[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert first[2].read_bytes()[:5] == b"%PDF-"
    svg = first[1].read_text()
    assert re.search(r"<text[^>]*>a title</text>", svg)  # text, not glyph paths: editable
    assert "<dc:date>" not in svg
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [p.name for p in
                                                                  sorted(first)]
    with pytest.raises(ConfigError, match="figure format 'jpg'"):
        report.save_figure(line_figure(), tmp_path / "x", ("jpg",))


@pytest.fixture
def study(tmp_path) -> Path:
    root = tmp_path / "results"
    fake_runs.fake_run(root, 0, "bicubic", 2, 0, dict(Set5=33.68, Set14=30.24))
    fake_runs.fake_run(root, 4, "baseline", 2, 0, dict(Set5=37.00, Set14=32.60))
    fake_runs.fake_run(root, 5, "batchnorm", 2, 0, dict(Set5=37.30, Set14=32.61))
    return root


def test_every_figure_call_takes_style_figsize_formats_and_out_dir(study, tmp_path):
    runs = report.TaskRuns(5, "cpu", [2], [0], [], str(study), None)
    out = tmp_path / "paper"
    big = {"figure.titlesize": 17}
    curves = report.training_curves(runs, style=big, figsize=(6, 3), formats=("pdf", "svg"),
                                    out_dir=out)
    visual = report.visual_comparison(runs, images=[], style=big, formats=("svg",),
                                      out_dir=out)
    cost = report.cost_figure("cpu", study, style=["ggplot", big], formats=("pdf", "svg"),
                              out_dir=out)
    assert sorted(p.name for p in out.iterdir()) == [
        "study-x2-cost.pdf", "study-x2-cost.svg", "task05-x2-curves.pdf",
        "task05-x2-curves.svg", "task05-x2-visual.svg"]
    assert not (study / "cpu" / "figures").exists()  # out_dir, not the results folder
    for files in (curves, visual, cost):
        svg = next(p for p in files.files if p.suffix == ".svg").read_text()
        assert "<text" in svg and "font-size: 17px" in svg  # the style's title size, as text
    assert "#e5e5e5" in cost.files[1].read_text()  # ggplot's axes face colour
    assert "data:image/svg+xml;base64," in curves._repr_html_()  # shown without a PNG
    hist = report.load_histories(runs.planned, "cpu", study)
    fig = report.curves_figure(hist, "t", style=big, figsize=(6, 3))
    assert tuple(fig.get_size_inches()) == (6, 3) and fig._suptitle.get_fontsize() == 17
    fig = report.comparison_figure([], "t", figsize=(4, 2))
    assert tuple(fig.get_size_inches()) == (4, 2)


def test_default_figures_go_to_the_profile_results_folder(study):
    runs = report.TaskRuns(5, "cpu", [2], [0], [], str(study), None)
    files = report.training_curves(runs)
    assert [p.relative_to(study).as_posix() for p in files.files] == [
        "cpu/figures/task05-x2-curves.png", "cpu/figures/task05-x2-curves.svg"]


def test_redrawing_the_committed_cost_figure_leaves_git_clean(tmp_path):
    """The results page's call on the committed results gives the committed bytes."""
    files = report.cost_figure("cpu", COMMITTED, scale=2, out_dir=tmp_path)  # as the page
    for f in files.files:
        assert f.read_bytes() == (COMMITTED / "cpu" / "figures" / f.name).read_bytes(), f.name


def overlaps(boxes) -> list[tuple[int, int]]:
    return [(i, j) for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2)
            if min(a.x1, b.x1) > max(a.x0, b.x0) and min(a.y1, b.y1) > max(a.y0, b.y0)]


def label_boxes(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    anns = [t for t in fig.axes[0].texts]
    return anns, [a.get_window_extent(renderer) for a in anns]


def test_cost_figure_labels_never_overlap():
    runs = report.aggregate_seeds(report.load_runs("cpu", COMMITTED))
    sub = runs[(runs.scale == 2) & (runs.set == "Set5") & (runs.variant != "bicubic")]
    labels = [f"{t}: {v}" for t, v in zip(sub.task, sub.variant, strict=True)]
    committed = pd.DataFrame({"gflops": sub.gflops_720p, "psnr": sub.psnr, "label": labels})
    # and a worst case: six points on top of each other, two more a hair apart
    crowd = pd.DataFrame({"gflops": [174.0] * 6 + [600.0, 610.0],
                          "psnr": [36.98, 36.98, 36.97, 36.99, 36.98, 36.96, 37.1, 37.1],
                          "label": ["7: leakyrelu", "4: baseline", "7: prelu", "9: l2",
                                    "10: rcab", "6: resblocks", "8: width96",
                                    "3: 8layers_grc"]})
    for points in (committed, crowd):
        assert len(points) >= 8
        fig = report.cost_plot(points.reset_index(drop=True), "Set5", "cost")
        anns, boxes = label_boxes(fig)
        assert [a.get_text() for a in anns] == list(points.label)
        assert overlaps(boxes) == []
        frame = fig.axes[0].get_window_extent()
        assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 for b in boxes)


def test_restyle_recipe_regenerates_a_figure_without_training(tmp_path, monkeypatch):
    nb = notebooks.notebooks()["results.ipynb"]
    recipe = next(c.source for c in nb.cells if c.source.startswith("## Restyle a figure"))
    code = recipe.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'out_dir="my-figures"' in code
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ABLATION_RESULTS", str(COMMITTED))
    exec(compile(code, "recipe", "exec"), {})
    out = tmp_path / "my-figures"
    assert sorted(p.name for p in out.iterdir()) == ["study-x2-cost.pdf", "study-x2-cost.svg"]
    svg = (out / "study-x2-cost.svg").read_text()
    assert "4: baseline" in svg and "<text" in svg  # the committed runs, as editable text
    assert nbformat.validate(nbformat.from_dict(nb)) is None
