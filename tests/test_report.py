"""ablation.report on a synthetic results folder (well-formed metrics.json / history.csv / model.pt
written directly, no training) plus one real smoke run (slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import fake_runs
import numpy as np
import pandas as pd
import pytest
import torch

from ablation import report, results
from ablation.config import make_config
from ablation.errors import DataError
from ablation.images import save_png
from ablation.models import build_model, count_params
from ablation.tasks import get_task

PROFILE = "cpu"


def fake_run(root: Path, task: int, variant: str, scale: int, seed: int,
             psnr: dict[str, float], profile: str = PROFILE, model: bool = True,
             spread: float = 0.0) -> Path:
    """A finished run's files (see tests/fake_runs.py; every trained run has its model.pt)."""
    return fake_runs.fake_run(root, task, variant, scale, seed, psnr, profile, spread=spread)


@pytest.fixture
def study(tmp_path) -> Path:
    """Task 4 baseline with 3 seeds, task 3's baseline, task 5 (1 seed), bicubic."""
    root = tmp_path / "results"
    fake_run(root, 0, "bicubic", 2, 0, dict(Set5=33.68, Set14=30.24))
    for seed, delta in enumerate((0.0, 0.02, -0.02)):
        fake_run(root, 4, "baseline", 2, seed, dict(Set5=37.00 + delta, Set14=32.60 + delta))
    fake_run(root, 3, "8layers_grc", 2, 0, dict(Set5=36.80, Set14=32.50))
    fake_run(root, 5, "batchnorm", 2, 0, dict(Set5=37.30, Set14=32.61))
    return root


def test_load_runs_has_one_row_per_run_and_set(study):
    df = report.load_runs(PROFILE, study)
    assert list(df.columns) == report.RUN_COLUMNS
    assert len(df) == 6 * 2
    assert set(df.task) == {0, 3, 4, 5}
    row = df[(df.variant == "batchnorm") & (df.set == "Set5")].iloc[0]
    assert row.psnr == pytest.approx(37.30) and row.params > 0 and row.gflops_720p > 0
    assert report.load_runs("smoke", study).empty


def test_aggregate_seeds_mean_std_n(study):
    agg = report.aggregate_seeds(report.load_runs(PROFILE, study))
    base = agg[(agg.variant == "baseline") & (agg.set == "Set5")].iloc[0]
    assert base.n == 3
    assert base.psnr == pytest.approx(37.0)
    assert base.psnr_std == pytest.approx(0.02)
    single = agg[(agg.variant == "batchnorm") & (agg.set == "Set5")].iloc[0]
    assert single.n == 1 and math.isnan(single.psnr_std)


def test_planned_runs_roles_and_gpu_only_variants():
    runs = report.planned_runs(10, [2], [0, 1], profile="cpu")
    roles = [(r.role, r.variant) for r in runs if r.seed == 0]
    assert roles == [("reference", "bicubic"), ("baseline", "baseline"),
                     ("baseline", "resblocks"), ("variant", "rcab"), ("variant", "rcan")]
    assert sum(r.variant == "bicubic" for r in runs) == 1  # deterministic: one seed
    rcan = [r for r in runs if r.variant == "rcan"]
    assert all(r.skip_reason == "needs a GPU (paper profile)" for r in rcan)
    assert not any(r.skip_reason for r in report.planned_runs(10, [2], profile="paper"))
    assert [r.scale for r in report.planned_runs(1, [2, 3, 4]) if r.role == "variant"] == \
        [2, 3, 4]


def test_run_one_turns_missing_resources_into_not_run_rows(monkeypatch, tmp_path):
    import ablation.runs

    def no_weights(*args, **kwargs):
        raise DataError("data/weights/vgg19-dcbb9e9d.pth: could not download VGG19 weights")

    monkeypatch.setattr(ablation.runs, "run_variant", no_weights)
    (run,) = [r for r in report.planned_runs(11, [2]) if r.role == "variant"]
    rec = report.run_one(run, "cpu", tmp_path)
    assert rec["status"] == "not run: needs VGG19 weights (vgg19-dcbb9e9d.pth; set " \
        "ABLATION_VGG19)"
    gpu = [r for r in report.planned_runs(10, [2], profile="cpu") if r.variant == "rcan"][0]
    assert report.run_one(gpu, "cpu", tmp_path)["status"] == \
        "not run: needs a GPU (paper profile)"


def test_task_table_wide_with_costs_and_not_run_rows(study):
    planned = report.planned_runs(5, [2], [0], profile=PROFILE)
    table = report.task_table(planned, report.load_runs(PROFILE, study), PROFILE)
    assert list(table.variant) == ["bicubic", "baseline", "batchnorm"]
    assert {"Set5 PSNR", "Set5 SSIM", "Set14 PSNR", "params", "FLOPs/pixel",
            "GFLOPs@1280x720"} <= set(table.columns)
    assert table.set_index("variant").loc["batchnorm", "Set5 PSNR"] == pytest.approx(37.30)
    # the page planned seed 0, but every seed on disk counts (one aggregation rule)
    assert table.set_index("variant").loc["baseline", "seeds"] == 3
    # task 6 has no finished run: the row stays, with costs from the spec
    planned6 = report.planned_runs(6, [2], [0], profile=PROFILE)
    t6 = report.task_table(planned6, report.load_runs(PROFILE, study), PROFILE).set_index(
        "variant")
    assert t6.loc["resblocks", "status"].startswith("not run")
    assert math.isnan(t6.loc["resblocks", "Set5 PSNR"])
    assert t6.loc["resblocks", "params"] == count_params(get_task(6).variant("resblocks").spec, 2)


def test_rendered_table_has_one_row_per_variant_and_marks_smoke(study):
    planned = report.planned_runs(8, [2], [0], profile=PROFILE)
    table = report.task_table(planned, report.load_runs(PROFILE, study), PROFILE)
    html = report.render_task_table(table, PROFILE).html
    assert html.count('class="ablation-row ablation-variant"') == len(get_task(8).variants)
    assert html.count('class="ablation-row ablation-baseline"') == 1
    assert "<b>37.00" in html  # best on Set5 (mean over the baseline's seeds)
    assert report.SMOKE_WARNING not in html
    smoke = report.render_task_table(table, "smoke").html
    assert report.SMOKE_WARNING in smoke and "admonition warning" in smoke
    assert "profile <code>cpu</code>" in html


def test_study_table_has_ours_original_and_published_rows(study):
    table = report.study_table(PROFILE, study, scales=(2, 3, 4))
    ours = table[table.source == f"this study ({PROFILE})"]
    assert len(ours[ours.scale == 2]) == 1 + sum(len(t.variants) for t in
                                                 [get_task(n) for n in range(0, 12)]
                                                 if 2 in t.scales)
    assert ours.set_index(["variant", "scale"]).loc[("batchnorm", 2), "Set5 PSNR"] == \
        pytest.approx(37.30)
    orig = table[table.source == "original study (README)"]
    assert len(orig) == len(report.ORIGINAL_README)
    assert orig.set_index("variant").loc["prelu", "note"].startswith("below bicubic")
    assert orig.set_index(["variant", "scale"]).loc[("3layers", 3), "Urban100 PSNR"] == 25.858
    pub = table[table.model.str.endswith("(published)")]
    assert len(pub) == 4 * 3
    row = pub[(pub.model == "VDSR (published)") & (pub.scale == 4)].iloc[0]
    assert (row["Set5 PSNR"], row["Set5 SSIM"]) == (31.35, 0.8838)
    html = report.render_study_table(table, PROFILE).html
    assert html.count("<h3>x") == 3


def test_save_figure_is_atomic_png_and_svg(tmp_path):
    fig = report.new_figure(3, 2)
    fig.subplots().plot([0, 1], [1, 0])
    png, svg = report.save_figure(fig, report.figures_dir("smoke", tmp_path) / "demo")
    assert png == tmp_path / "smoke" / "figures" / "demo.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert svg.read_text().lstrip().startswith("<?xml")
    assert sorted(p.name for p in png.parent.iterdir()) == ["demo.png", "demo.svg"]


def test_training_curves_from_history(study):
    runs = report.TaskRuns(5, PROFILE, [2], [0, 1, 2], [], str(study), None)
    figs = report.training_curves(runs)
    assert [p.name for p in figs.pngs] == ["task05-x2-curves.png"]
    assert figs.pngs[0].stat().st_size > 1000 and figs.svgs[0].exists()
    assert "data:image/png;base64," in figs._repr_html_()
    hist = report.load_histories(runs.planned, PROFILE, study)
    assert set(hist.label) == {"baseline (8 conv, LR input)", "baseline + batch norm"}


@pytest.fixture
def image_folder(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    y, x = np.mgrid[0:60, 0:72]
    img = np.stack([(x * 3) % 256, (y * 4) % 256, ((x + y) * 2) % 256], -1).astype(np.float64)
    img += rng.normal(0, 8, img.shape)
    save_png(folder / "pattern.png", np.clip(img, 0, 255).astype(np.uint8))
    return folder


def test_crop_inference_equals_whole_image(image_folder):
    from ablation.evaluate import run_model
    from ablation.inference import receptive_radius

    torch.manual_seed(0)
    for spec_task, variant in ((4, "baseline"), (2, "3layers_grc")):
        model = build_model(get_task(spec_task).variant(variant).spec, 2).double().eval()
        lr = torch.rand(1, 3, 30, 36, dtype=torch.float64) * 255
        full = run_model(model, lr)
        crop = report.sr_crop(model, lr, 2, (10, 14, 24), receptive_radius(model))
        assert torch.allclose(crop, full[..., 10:34, 14:38], atol=1e-6)


def test_visual_comparison_panels(study, image_folder):
    fake_run(study, 4, "baseline", 2, 0, dict(Set5=37.0), model=True)
    fake_run(study, 5, "batchnorm", 2, 0, dict(Set5=37.3), model=True)
    images = [image_folder / "pattern.png"]
    planned = report.planned_runs(5, [2], [0], profile=PROFILE)
    (row,) = report.comparison_panels(planned, 2, PROFILE, study, images=images, crop=24)
    assert row[0][0] == "HR (tmp/pattern)".replace("tmp", image_folder.parent.name)
    assert [t for t, _, _ in row[1:]] == ["bicubic (MATLAB)", "baseline (8 conv, LR input)",
                                          "baseline + batch norm"]
    assert all(img.shape == (24, 24, 3) and img.dtype == np.uint8 for _, img, _ in row)
    assert math.isinf(row[0][2]) and all(math.isfinite(p) for _, _, p in row[1:])
    runs = report.TaskRuns(5, PROFILE, [2], [0], [], str(study), None)
    figs = report.visual_comparison(runs, images=images)
    assert figs.pngs[0].name == "task05-x2-visual.png" and figs.pngs[0].stat().st_size > 1000


def test_best_crop_finds_the_error():
    err = np.zeros((40, 50))
    err[20:30, 30:40] = 1.0
    assert report.best_crop(err, 10, 2, 2) == (20, 30)


def test_profiles_table_reads_the_config():
    table = report.profiles_table()
    for name in ("smoke", "cpu", "paper"):
        c = make_config(name)
        assert table.loc[name, "iterations"] == f"{c.iterations:,}"
        assert table.loc[name, "training set"] == c.train_set
    # paper: 300k x 16 x 96^2 = 44.2 G pixels; cpu: 2000 x 16 x 64^2 = 0.131 G (~340x fewer)
    assert table.loc["paper", "HR pixels seen in training (x2)"] == "44.2 G"
    assert table.loc["cpu", "HR pixels seen in training (x2)"] == "0.131 G"
    assert "(this book)" in report.method_profiles("smoke").html


def test_study_conclusion_and_banner(study):
    html = report.study_conclusion(PROFILE, study, scales=(2,)).html
    assert "the best small net is <i>baseline + batch norm</i>" in html
    assert "+3.62 dB against bicubic" in html
    assert "Task 5: Batch normalisation" in html
    smoke = report.study_conclusion("smoke", study).html
    assert report.SMOKE_WARNING in smoke
    assert report.SMOKE_WARNING in report.profile_banner("smoke").html
    assert report.SMOKE_WARNING not in report.profile_banner("cpu").html


@pytest.mark.slow
def test_real_smoke_task(tmp_path, data_dir):
    """run_task on the smoke profile: trains, evaluates and shows every section."""
    runs = report.run_task(2, profile="smoke", data_dir=data_dir,
                           results_dir=tmp_path / "results", iterations=2, progress=False)
    assert [r["status"] for r in runs.records] == ["ran", "ran", "ran"]
    html = report.results_table(runs).html
    assert html.count('class="ablation-row ablation-variant"') == 1
    assert report.SMOKE_WARNING in runs._repr_html_()  # the page's runs section warns, once
    assert report.SMOKE_WARNING not in html
    assert report.training_curves(runs).pngs[0].exists()
    assert report.visual_comparison(runs).pngs[0].exists()
    assert "highest PSNR" in report.conclusion(runs).html
    from ablation import results as results_mod

    shares = [m.get("cpu_share") for m in results_mod.iter_metrics("smoke", tmp_path / "results")
              if m["variant"] != "bicubic"]
    assert len(shares) == 2 and all(0 < x < 2 for x in shares)  # recorded for CPU runs
    speeds = {m["variant"]: m.get("conv_gflops")
              for m in results_mod.iter_metrics("smoke", tmp_path / "results")}
    assert speeds["bicubic"] is None  # nothing trained: no machine speed to record
    assert all(x > 0 for v, x in speeds.items() if v != "bicubic")
    again = report.run_task(2, profile="smoke", data_dir=data_dir,
                            results_dir=tmp_path / "results", iterations=2, progress=False)
    assert [r["status"] for r in again.records] == ["reused"] * 3


def test_final_losses_and_fit_sentence(study):
    planned = report.planned_runs(5, [2], [0], profile=PROFILE)
    losses = report.final_losses(planned, PROFILE, study)
    # fake histories log loss 0.1 at iteration 50 and 0.05 at 100: the last 10% is row 100
    assert losses[(5, "batchnorm", 2)] == pytest.approx(0.05)
    assert losses[(4, "baseline", 2)] == pytest.approx(0.05)  # mean over its 3 seeds
    v = pd.Series({"task": 8, "variant": "depth16"})
    ref = pd.Series({"task": 4, "variant": "baseline"})
    under = report.fit_sentence(v, ref, 2, {(8, "depth16", 2): 0.0227, (4, "baseline", 2): 0.0196})
    assert "higher (0.0227 vs 0.0196)" in under and "under-trained" in under
    over = report.fit_sentence(v, ref, 2, {(8, "depth16", 2): 0.0180, (4, "baseline", 2): 0.0196})
    assert "lower (0.0180 vs 0.0196)" in over and "generalises worse" in over
    # an L2-trained variant's loss is not comparable with an L1 baseline's
    l2 = pd.Series({"task": 9, "variant": "l2"})
    assert report.fit_sentence(l2, ref, 2, {(9, "l2", 2): 1.0, (4, "baseline", 2): 0.02}) == ""


def test_fit_sentence_names_a_vanished_body():
    v, ref = pd.Series({"task": 8, "variant": "depth32"}), pd.Series({"task": 4,
                                                                      "variant": "baseline"})
    text = report.fit_sentence(v, ref, 2, {}, {(8, "depth32", 2): {0: 2e-12},
                                               (4, "baseline", 2): {0: 0.9, 1: 0.8}})
    assert text.startswith(" Its body adds almost nothing: its output is 2.0e-12 times the "
                           "size of its input (the comparison's: 0.85).")
    assert "never trains" in text
    both = report.fit_sentence(v, ref, 2, {}, {(8, "depth32", 2): {0: 2e-12, 2: 5e-8}})
    assert "adds almost nothing in all 2 seeds probed: its output is 2.0e-12, 5.0e-08" in both


def test_fit_sentence_says_which_seeds_trained_a_deep_body():
    """depth16 at cpu: seeds 0 and 2 end as the linear path, seed 1's body trains."""
    v, ref = pd.Series({"task": 8, "variant": "depth16"}), pd.Series({"task": 4,
                                                                      "variant": "baseline"})
    text = report.fit_sentence(v, ref, 2, {}, {(8, "depth16", 2): {0: 5.6e-8, 1: 0.11,
                                                                   2: 1.3e-7}})
    assert (" In 2 of its 3 seeds probed (seeds 0 and 2) its body adds almost nothing: its "
            "output is 5.6e-08, 1.3e-07 times the size of its input.") in text
    assert text.endswith("In seed 1 the body does train (output 0.11 times its input): at this "
                         "budget whether a deep plain body trains at all depends on the seed.")
    assert report.fit_sentence(v, ref, 2, {}, {(8, "depth16", 2): {1: 0.11}}) == ""


def test_body_gain_is_recorded_per_seed_and_read_back(tmp_path):
    """Training records the body's gain in metrics.json; the report reads every seed's value
    (the model of a non-checkpoint seed is not committed) and a bad value marks the run
    damaged."""
    from ablation.models import ModelSpec, body_gain

    net = build_model(ModelSpec(n_blocks=2, n_feats=8), 2)
    g = body_gain(net)
    net.train()
    assert g is not None and g > 0 and body_gain(net) == g and net.training  # mode restored
    assert body_gain(build_model(ModelSpec(input="bicubic", n_blocks=2, n_feats=8), 2)) is None
    torch.manual_seed(0)
    root = tmp_path / "r"
    for seed, gain in ((0, 1e-9), (1, 0.2)):
        folder = fake_run(root, 8, "depth16", 2, seed, dict(Set5=33.0))
        m = json.loads((folder / "metrics.json").read_text())
        (folder / "metrics.json").write_text(json.dumps({**m, "body_gain": gain}))
    planned = report.planned_runs(8, [2], [0], profile=PROFILE)
    assert report.body_gains(planned, PROFILE, root)[(8, "depth16", 2)] == {0: 1e-9, 1: 0.2}
    m = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**m, "body_gain": -1}))
    assert "bad 'body_gain'" in results.check_run(folder).problem
    for speed in (0, -3.0, "fast", True):  # the machine-speed record is checked the same way
        (folder / "metrics.json").write_text(json.dumps({**m, "conv_gflops": speed}))
        assert "bad 'conv_gflops'" in results.check_run(folder).problem


def test_tables_show_the_label_the_run_recorded(tmp_path):
    root = tmp_path / "r"
    folder = fake_run(root, 11, "perceptual", 2, 0, dict(Set5=33.8))
    m = json.loads((folder / "metrics.json").read_text())
    m["label"] += " [substitute backbone: efficientnet_lite0, not VGG19]"
    (folder / "metrics.json").write_text(json.dumps(m))
    runs = report.load_runs(PROFILE, root)
    table = report.task_table(report.planned_runs(11, [2], [0], profile=PROFILE), runs, PROFILE)
    assert table.set_index("variant").loc["perceptual", "label"].endswith("not VGG19]")
    study = report.study_table(PROFILE, root, scales=(2,))
    assert study[study.variant == "perceptual"].model.iloc[0].endswith("not VGG19]")


def test_study_table_notes_a_run_trained_with_its_own_settings(tmp_path):
    root = tmp_path / "r"
    fake_run(root, 0, "edsr_baseline", 2, 0, dict(Set5=37.5))
    table = report.study_table(PROFILE, root, scales=(2,), original=False, published=False)
    note = table[table.variant == "edsr_baseline"].note.iloc[0]
    assert note == "cpu profile: peak learning rate 0.0005 (diverges at 2e-3)"
    assert table[table.variant == "baseline"].note.iloc[0].startswith("not run")


def test_cpu_share_is_cpu_time_over_threads_wall_time():
    from ablation.runs import cpu_share

    assert cpu_share(18.0, 10.0, 2) == pytest.approx(0.9)
    assert cpu_share(10.0, 10.0, 2) == pytest.approx(0.5)  # half its threads' time
    assert cpu_share(1.0, 0.0, 2) is None


def test_compute_table_marks_runs_that_shared_the_cores(tmp_path):
    sets = {"Set5": 30.0}
    shares = {"baseline": 0.95, "batchnorm": 0.55, "resblocks": None}
    for variant, share in shares.items():
        task = {"baseline": 4, "batchnorm": 5, "resblocks": 6}[variant]
        folder = fake_runs.fake_run(tmp_path, task, variant, 2, 0, sets)
        m = json.loads((folder / "metrics.json").read_text())
        if share is not None:
            m["cpu_share"] = share
            m["conv_gflops"] = 512.4 if variant == "baseline" else 161.0
        (folder / "metrics.json").write_text(json.dumps(m))
    html = report.compute_table("cpu", tmp_path).html
    rows = {r.split("</td>")[1].removeprefix("<td>"): r for r in html.split("<tr>")[2:]}
    assert "95%" in rows["baseline"] and "shared" not in rows["baseline"]
    assert "55% &#8224; shared" in rows["batchnorm"]
    assert rows["baseline"].endswith("<td>512</td></tr>")  # the machine's speed, per run
    assert rows["batchnorm"].endswith("<td>161</td></tr>")
    assert rows["resblocks"].count("not recorded") == 2  # neither share nor speed
    assert "a run under 80%" in html and "(1 here)" in html
