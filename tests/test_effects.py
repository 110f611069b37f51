"""Effects with intervals on a synthetic results folder: the effects table, the prose built on it
(edge cases: one seed, no interval, a missing run, a failed run), the forest plot, the findings
page, the compute ladder and the README's findings block."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import fake_runs
import numpy as np
import pytest
from scipy import stats as sps

from ablation import report, stats
from ablation.report import MEAN_SET, TaskRuns
from ablation.results import DamagedRunWarning

PROFILE = "cpu"
REPO = Path(__file__).resolve().parents[1]
T2 = float(sps.t.ppf(0.975, 2))  # three seeds of one side, nothing else varies: df = 2


def run(root, task, variant, seed, psnr, profile=PROFILE, spread=0.0):
    """A finished x2 run (model.pt for seed 0 only, as the repository keeps them)."""
    return fake_runs.fake_run(root, task, variant, 2, seed, psnr, profile, spread=spread,
                              model=seed == 0)


@pytest.fixture
def study(tmp_path) -> Path:
    """Baseline with 3 seeds whose seed 0 is not their mean (36.94 / 37.00 / 37.00 on Set5),
    batch norm with one seed, bicubic; per-image scores all equal inside a set."""
    root = tmp_path / "results"
    run(root, 0, "bicubic", 0, dict(Set5=33.68, Set14=30.24))
    for seed, set5 in enumerate((36.94, 37.00, 37.00)):
        run(root, 4, "baseline", seed, dict(Set5=set5, Set14=32.60))
    run(root, 5, "batchnorm", 0, dict(Set5=37.30, Set14=32.61))
    return root


def test_effects_table_intervals_from_the_seeds(study):
    t = report.effects_table(PROFILE, study, tasks=[5]).set_index("set")
    # Set5: 37.30 - mean(36.94, 37.00, 37.00) = +0.32; baseline seed sd 0.034641 (var 0.0012)
    half = T2 * math.sqrt(0.0012 / 3)
    row = t.loc["Set5"]
    assert row.effect == pytest.approx(0.32)
    assert (row.low, row.high) == pytest.approx((0.32 - half, 0.32 + half))
    assert row.verdict == stats.BETTER and row.provisional and not row.seed_estimated
    assert (row.n_variant, row.n_reference, row.n_images) == (1, 3, 5)
    # Set14: every baseline seed 32.60, batch norm 32.61, no spread anywhere: no interval
    assert t.loc["Set14"].effect == pytest.approx(0.01)
    assert t.loc["Set14"].verdict == stats.NO_INTERVAL
    # mean of the 2 sets: +0.165, the seed term of the mean score (var 0.0003)
    m = t.loc[MEAN_SET]
    assert m.effect == pytest.approx(0.165)
    assert m.high - m.effect == pytest.approx(T2 * math.sqrt(0.0003 / 3))
    # README: batch norm vs baseline on Set5 and Set14: (0.301 + 0.242) / 2
    assert m.original == pytest.approx(0.2715)


def test_one_aggregation_rule_on_every_page(study):
    """The same run shows the same number everywhere: the mean over every seed on disk
    (36.98 on Set5), although the task page only planned seed 0 (36.94)."""
    planned = report.planned_runs(5, [2], [0], profile=PROFILE)
    table = report.task_table(planned, report.load_runs(PROFILE, study), PROFILE)
    assert table.set_index("variant").loc["baseline", "Set5 PSNR"] == pytest.approx(36.98)
    assert "36.98 ± 0.03" in report.render_task_table(table, PROFILE).html
    study_t = report.study_table(PROFILE, study, scales=(2,))
    ours = study_t[(study_t.variant == "baseline") & study_t.source.str.startswith("this")]
    assert ours["Set5 PSNR"].iloc[0] == pytest.approx(36.98)
    assert "36.98" in report.study_results(PROFILE, study, scales=(2,)).html
    assert report.AGGREGATION_RULE in report.study_results(PROFILE, study, scales=(2,)).html


def test_conclusion_states_effect_interval_verdict_and_original(study):
    runs = TaskRuns(5, PROFILE, [2], [0], [], str(study), None)
    text = report.conclusion(runs).html
    assert ("<b>Answer (x2)</b>: <i>baseline + batch norm</i> against <i>baseline (8 conv, LR "
            "input)</i>: +0.16 dB [+0.12, +0.21]: <b>better (provisional)</b> on the mean of the "
            "2 sets") in text
    assert "seed-to-seed spread not estimated (one seed)" in text
    assert "Set5 +0.32 dB [+0.23, +0.41]: <b>better (provisional)</b>" in text
    assert f"Set14 +0.01 dB (no interval): <b>{stats.NO_INTERVAL}</b>" in text
    # README +0.27 (same direction), outside our interval [+0.12, +0.21]
    assert "README: +0.27 dB on the same sets, outside our interval (same direction as ours)" \
        in text
    assert "highest PSNR: <i>baseline + batch norm</i> at 37.30 dB (mean of 1 seed)" in text
    assert "band" not in text


def _answers(root: Path, task: int, status=None) -> str:
    runs = report.load_runs(PROFILE, root)
    table = report.task_table(report.planned_runs(task, [2], [0], profile=PROFILE), runs, PROFILE)
    eff = report.effects_table(PROFILE, root, [task], status=status)
    return " ".join(report.conclusion_text(task, table, PROFILE, eff))


def _consistent(text: str) -> None:
    """No sentence states two verdicts for one effect; no proxy band is left."""
    assert "band" not in text
    for phrase in re.findall(r"dB \[[^\]]*\]: <b>([^<]*)</b>", text):
        verdict = phrase.removesuffix(" (provisional)")
        assert verdict in stats.VERDICTS


def test_prose_edge_case_one_seed_each_side(tmp_path):
    root = tmp_path / "r"
    run(root, 4, "baseline", 0, dict(Set5=37.0), spread=0.1)
    run(root, 9, "l2", 0, dict(Set5=36.7), spread=0.1)
    text = _answers(root, 9)
    _consistent(text)
    # identical image offsets on both sides: the paired differences don't vary -> no interval
    assert f"−0.30 dB (no interval): <b>{stats.NO_INTERVAL}</b>" in text
    assert "worse" not in text and "better" not in text
    # README: L2 vs baseline +0.20 on Set5, read against no interval
    assert "README: +0.20 dB on the same sets." in text


def test_prose_edge_case_one_seed_with_image_spread(tmp_path):
    root = tmp_path / "r"
    run(root, 4, "baseline", 0, dict(Set5=37.0), spread=0.1)
    run(root, 9, "l2", 0, dict(Set5=36.7), spread=0.2)  # per-image differences vary
    text = _answers(root, 9)
    _consistent(text)
    d = np.array([0.1 * (i - 2) for i in range(5)])  # variant minus reference offsets
    half = sps.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert f"−0.30 dB [{stats.signed(-0.3 - half)}, {stats.signed(-0.3 + half)}]" in text
    assert "<b>worse (provisional)</b>" in text and "seed-to-seed spread not estimated" in text
    assert "opposite direction to ours" in text  # README: +0.20


def test_prose_edge_case_missing_and_failed_runs(study):
    text = _answers(study, 6)  # no residual-block run at all
    _consistent(text)
    assert ("<i>3 residual blocks (6 convs)</i> against <i>baseline (8 conv, LR input)</i>: "
            "not run: 3 residual blocks (6 convs): no finished run yet.") in text
    failed = {"task11/perceptual/x2/seed0": "not run: needs VGG19 weights (vgg19-dcbb9e9d.pth)"}
    text = _answers(study, 11, failed)
    assert "not run: VGG19 conv5_4 feature loss: needs VGG19 weights (vgg19-dcbb9e9d.pth)." \
        in text
    _consistent(text)


def test_a_diverged_seed_is_named_and_left_out_of_the_interval(study):
    """A seed whose training blew up (its diverged.json, no scores) is named in the answer and
    counted in the README's seeds cell; the interval rests on the finished seeds."""
    run(study, 5, "batchnorm", 1, dict(Set5=37.30, Set14=32.61))
    folder = study / PROFILE / "task05/batchnorm/x2/seed2"
    folder.mkdir(parents=True)
    (folder / "diverged.json").write_text(json.dumps(dict(
        config_hash="0123456789abcdef", iteration=475, seed=2, message=(
            "loss exploded at iteration 475: 4.505, over 100x its best so far (0.03153)"))))
    row = report.effects_table(PROFILE, study, tasks=[5]).set_index("set").loc[MEAN_SET]
    assert row.n_variant == 2 and row.diverged == (
        "seed 2 of baseline + batch norm diverged in training (loss exploded at iteration 475: "
        "4.505, over 100x its best so far (0.03153))")
    text = _answers(study, 5)
    _consistent(text)
    assert ("Not in the interval: seed 2 of baseline + batch norm diverged in training (loss "
            "exploded at iteration 475: 4.505, over 100x its best so far (0.03153)).") in text
    readme = report.readme_findings(study)
    assert "| x2 | 2 / 3 (+1 diverged) |" in readme


def test_prose_edge_case_damaged_run_is_not_judged(study):
    m = study / PROFILE / "task05/batchnorm/x2/seed0/metrics.json"
    m.write_text(m.read_text()[:40])  # a run that failed while writing
    with pytest.warns(DamagedRunWarning):  # the tables name the file; the effects skip it
        text = _answers(study, 5)
    _consistent(text)
    assert "baseline + batch norm: no finished run yet." in text
    assert "better" not in text


def test_forest_plot_style_size_and_original_marker(study):
    runs = TaskRuns(5, PROFILE, [2], [0], [], str(study), None)
    files = report.forest_plot(runs)
    assert files.pngs[0].name == "task05-x2-effects.png" and files.svgs[0].exists()
    rows = report.forest_rows(report.effects_table(PROFILE, study, [5]))
    fig = report.forest_figure(rows, "t", style={"font.size": 5}, figsize=(4, 3))
    assert tuple(fig.get_size_inches()) == (4, 3)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Set5", "Set14", "mean of the sets"]
    assert ax.get_yticklabels()[0].get_fontsize() == 5
    originals = [line for line in ax.lines if line.get_marker() == "x"]
    assert len(originals) == 3  # Set5, Set14 and the mean have a README difference
    assert originals[0].get_xdata()[0] == pytest.approx(37.636 - 37.335)


def test_findings_page_links_every_task(study):
    html = report.findings(PROFILE, study).html
    assert '<a href="../tasks/task05-x2.html">Task 5</a>' in html
    assert '<a href="../tasks/task01-x3.html">Task 1</a>' in html
    assert "better (provisional)" in html and "not run:" in html
    files = report.findings_plot(PROFILE, study)
    assert files.pngs[0].exists()


def test_ladder_reads_committed_runs_and_names_the_missing(tmp_path):
    root = tmp_path / "r"
    for profile, base, bn in (("cpu", 37.0, 36.2), ("cpu4", 37.4, 37.5)):
        for seed, d in enumerate((0.0, 0.02, -0.02)):
            run(root, 4, "baseline", seed, dict(B100=base + d, Set5=base + d), profile,
                spread=0.1)
            run(root, 5, "batchnorm", seed, dict(B100=bn + d, Set5=bn + d), profile, spread=0.1)
    assert report.ladder_status(root).set_index("variant").loc["batchnorm", "4x"] == 3
    eff = report.ladder_effects(root)
    bn = eff[(eff.variant == "batchnorm") & (eff.set == "B100")].set_index("budget")
    assert bn.loc["1x"].effect.effect == pytest.approx(-0.8)
    assert bn.loc["4x"].effect.effect == pytest.approx(0.1)
    assert bn.loc["4x"].change == "flips" and bn.loc["16x"].change == "not yet run"
    text = " ".join(report.ladder_conclusion(root).html.split())
    assert "From 1x the effect flips at 4x; 16x not yet run." in text
    assert "Task 6, <i>3 residual blocks (6 convs)</i></b> against the baseline: the ladder is " \
           "not yet run" in text
    html = report.ladder_tables(root).html
    assert "Ladder runs not yet committed" in html and "3 residual blocks (6 convs) at 1x" in html
    points = report.ladder_points(root)
    assert set(points.pixels) == {2000 * 16 * 64 ** 2, 4 * 2000 * 16 * 64 ** 2}
    assert report.ladder_curves(root).pngs[0].exists()
    assert not (root / "cpu16").exists()  # reading never trains nor creates a profile


def test_the_16x_factor_is_the_one_that_moved_most_from_1x_to_4x(tmp_path):
    root = tmp_path / "r"
    moves = {"batchnorm": (5, -0.6, -0.3), "resblocks": (6, -0.4, -0.35),
             "depth16": (8, -1.0, -0.2), "l2": (9, -0.2, -0.1), "rcab": (10, -0.3, -0.5)}
    for profile, base in (("cpu", 31.0), ("cpu4", 31.5)):
        for seed, d in enumerate((0.0, 0.02, -0.02)):
            run(root, 4, "baseline", seed, dict(B100=base + d, Set5=base + d), profile)
            for variant, (task, at1, at4) in moves.items():
                if variant == "depth16" and profile == "cpu4" and seed == 0:
                    assert report.most_moved_factor(report.ladder_effects(root)) is None
                x = at1 if profile == "cpu" else at4
                run(root, task, variant, seed, dict(B100=base + d + x, Set5=base + d + x),
                    profile)
    for profile, gains in (("cpu", (1e-7, 0.11, 2e-7)), ("cpu4", (0.5, 0.62, 0.4))):
        for seed, gain in enumerate(gains):  # the body trains only with more compute
            m = root / profile / f"task08/depth16/x2/seed{seed}/metrics.json"
            m.write_text(json.dumps(dict(json.loads(m.read_text()), body_gain=gain)))
    task, variant, moved = report.most_moved_factor(report.ladder_effects(root))
    assert (task, variant) == (8, "depth16") and moved == pytest.approx(0.8)
    html = " ".join(report.ladder_tables(root).html.split())
    assert "every factor holds): <b>task 8, 16 layers</b> (by 0.80 dB)" in html
    missing = html.split("Ladder runs not yet committed</b>: ")[1].split(".</p>")[0]
    assert missing.split("; ") == ["baseline (8 conv, LR input) at 16x", "16 layers at 16x"]
    assert ("<td>16 layers</td> <td>0: 1.0e-07, 1: 0.11, 2: 2.0e-07</td> "
            "<td>0: 0.50, 1: 0.62, 2: 0.40</td> <td>–</td>") in html
    text = " ".join(report.ladder_conclusion(root).html.split())
    assert ("Its body vanished (body gain under 0.001) in some seeds (1x: 2 of 3; 4x: 0 of 3)"
            in text)
    assert "the ladder stops at 4x for this factor" in text  # batch norm, L2, ... stop at 4x
    for profile in ("cpu", "cpu4"):
        for seed in range(3):  # now no body ever trains
            m = root / profile / f"task08/depth16/x2/seed{seed}/metrics.json"
            m.write_text(json.dumps(dict(json.loads(m.read_text()), body_gain=1e-8)))
    text = " ".join(report.ladder_conclusion(root).html.split())
    assert "Its body never trained in any seed run (6; body gain under 0.001)" in text
    readme = report.readme_ladder(root)
    assert "| 8 | 16 layers | −1.00 dB [" in readme and "*shrinks* | not yet run |" in readme
    assert "| 9 | L2 loss | −0.20 dB [" in readme and readme.count("| – |") == 4
    assert "16x runs the baseline and the factor whose effect on the mean of the " \
           "sets moved most from 1x to 4x (a move that holds, inside the 4x interval, counts " \
           "only if every factor holds): task 8 (0.80 dB)" in readme
    assert readme.endswith(
        "Not committed yet: baseline (8 conv, LR input) at 16x; 16 layers at 16x.")
    with pytest.raises(ValueError, match="README.md lacks the generated block"):
        report.update_readme("no blocks here", root)


def test_a_move_inside_the_interval_is_not_the_move_that_goes_to_16x():
    import pandas as pd

    e = lambda x, lo, hi: stats.Effect(x, lo, hi, 3, 3, 100, True)  # noqa: E731
    rows = [dict(task=8, variant="depth16", profile="cpu", effect=e(-1.57, -2.08, -1.05)),
            dict(task=8, variant="depth16", profile="cpu4", effect=e(-2.03, -2.66, -1.41)),
            dict(task=5, variant="batchnorm", profile="cpu", effect=e(-0.64, -1.05, -0.23)),
            dict(task=5, variant="batchnorm", profile="cpu4", effect=e(-0.33, -0.40, -0.26))]
    effects = pd.DataFrame([dict(r, set=MEAN_SET) for r in rows])
    task, variant, moved = report.most_moved_factor(effects)  # depth 16 moved more, but holds
    assert (task, variant) == (5, "batchnorm") and moved == pytest.approx(0.31)
    holds_only = effects[effects.variant == "depth16"]
    assert report.most_moved_factor(holds_only)[:2] == (8, "depth16")  # all hold: the largest
    assert report.most_moved_factor(effects.iloc[:3]) is None  # batch norm's 4x not committed


def test_ladder_change_rule():
    e = lambda x, lo, hi: stats.Effect(x, lo, hi, 3, 3, 100, True)  # noqa: E731
    first = e(-0.8, -1.0, -0.6)
    assert report.change(first, e(-0.7, -0.9, -0.5)) == "holds"
    assert report.change(first, e(-0.2, -0.4, 0.0)) == "shrinks"
    assert report.change(first, e(-1.6, -1.8, -1.4)) == "grows"
    assert report.change(first, e(0.3, 0.1, 0.5)) == "flips"
    assert report.change(first, e(0.1, -0.1, 0.3)) == "shrinks"  # no detected effect: not a flip
    assert report.change(first, None) == "not yet run"


def test_readme_findings_come_from_the_committed_results():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert report.update_readme(text, REPO / "results") == text, \
        "README findings or ladder are stale: run `ablation book generate`"
    assert "| 5 | baseline + batch norm | −0.64 dB [−1.05, −0.23] worse |" in text  # ladder, 1x
    n, hours = report.study_hours("cpu", REPO / "results")
    assert f"{n} committed runs under `results/cpu`, {hours:.2f} h" in text
    # no other number for the study's time in the README or the method page
    from ablation.booktext import METHOD_AFTER

    assert "four hours" not in METHOD_AFTER and "3.0 h" not in text


def test_method_page_quotes_the_seed_code():
    from ablation.booktext import METHOD_AFTER

    train = (REPO / "ablation" / "train.py").read_text(encoding="utf-8")
    for line in ("torch.manual_seed(config.seed)  # identical init on every rank",
                 "gen.manual_seed(config.seed * 1009 + rank + 1)"):
        assert line in train and line in METHOD_AFTER


def test_depth16_kaiming_is_compared_with_depth16_and_the_baseline():
    pairs = [(c.variant, c.ref_variant) for c in report.comparisons(8)]
    assert ("depth16_kaiming", "baseline") in pairs and ("depth16_kaiming", "depth16") in pairs
    from ablation.tasks import get_task

    assert get_task(8).variant("depth16_kaiming").note.startswith("not in the original study")
    json.dumps(pairs)  # plain data


def test_diagnostic_variant_is_labelled_on_the_page(tmp_path):
    root = tmp_path / "r"
    for seed, d in enumerate((0.0, 0.02, -0.02)):
        run(root, 4, "baseline", seed, dict(Set5=37.0 + d), spread=0.1)
        run(root, 8, "depth16", seed, dict(Set5=35.4 + d), spread=0.1)
        run(root, 8, "depth16_kaiming", seed, dict(Set5=37.1 + d), spread=0.2)
    runs = TaskRuns(8, PROFILE, [2], [0], ["depth16", "depth16_kaiming"], str(root), None)
    html = report.effects(runs).html
    assert html.count("<i>not in the original study</i>") == 2  # against baseline and depth16
    text = _answers(root, 8)
    assert ("<i>16 layers, He-init body (diagnostic)</i> (not in the original study) against "
            "<i>16 layers</i>: +1.70 dB") in text
    assert "3 vs 3 seeds, 5 images" in text  # the seed term is estimated: not provisional
