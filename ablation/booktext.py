"""The hand-written prose of the generated study pages (method, results, conclusion).

:mod:`ablation.notebooks` puts these texts around the code cells of ``notebooks/method.ipynb``,
``results.ipynb`` and ``conclusion.ipynb``; edit them here and run ``ablation book generate``.
"""

RESULTS_INTRO = """
# Results

Every variant of the study at every scale it defines, on the four benchmark sets, beside the
original study's README numbers and published reference results. The reference models of this
study (bicubic and EDSR-baseline) are run here with the same pipeline as the tasks.
"""

METHOD_INTRO = """
# Method

## Data

Training uses the **291** images (T91 plus the 200 BSDS300 training images) under the `cpu`
profile, and **DIV2K** (images 0001-0800) under the `paper` profile, the original study's
training set. A few training images are held out for validation, which only draws the
curves: no test set is ever used to choose a checkpoint, and every run is scored with its
final weights. The benchmark sets (Set5, Set14, B100, Urban100) are used for testing only.

## Degradation

Low-resolution inputs are made from the HR images with MATLAB-style bicubic downsampling
(antialiased cubic kernel, `a = -0.5`) and rounded to 8 bits, the degradation of the published
benchmark tables. Blur and noise are off: the original README mentions them, but its code did
not apply them.

## Profiles

A profile is a named set of training settings; every notebook parameter can override a field.
The table is read from `ablation.config.PROFILES` when the page is built:
"""

METHOD_AFTER = """
The `smoke` profile only proves that the pipeline runs end to end; its numbers are never
findings. The `paper` profile is the original recipe for GPUs.

### Why the `cpu` budget looks the way it does

The `cpu` profile is what a two-core laptop can do for the whole study (every variant at x2,
task 1 and the reference models also at x3 and x4) in an afternoon of training and
evaluation on two cores; the *Compute* section of {doc}`results` lists the measured wall time
of every committed run and their total, the one source of the study's time. Three choices
follow:

- **Same budget for every variant.** Every run gets the same iterations, batch, patch size and
  schedule, so a deeper or wider net is not helped by more updates: the study compares designs
  at equal training cost in *iterations*, not at equal wall time.
- **Small patches, short one-cycle schedule.** The LR patch is smaller than the paper's 48 px,
  and the learning rate warms up to a peak far above the paper's 1e-4 before a cosine decay to
  almost zero. A short run needs the high peak to get anywhere and the decay to settle; a pilot
  with fewer iterations left the baseline well short of its level here, which is why the
  iteration count is what it is.
- **291 images instead of DIV2K.** The classic T91 + BSDS200 set is small enough to decode once
  into memory; DIV2K is used automatically under the `paper` profile.
- **One stated exception.** The reference EDSR-baseline (16 residual blocks, not a task
  variant) diverges at the 2e-3 peak: at x2 its L1 loss went from 0.028 at iteration 250 to
  3.2 at 300 and 7e9 at 500, ending at 8.7 dB on the validation images. It trains with a 5e-4
  peak under this profile (`ablation.tasks.EDSR_CPU_LEARNING_RATE`); its rows say so. A loss
  that grows 100-fold over its best now stops any run at once, keeping the last good
  checkpoint.

What this likely changes: every network here is under-trained compared with the paper recipe
(two to three orders of magnitude fewer training pixels, see the table), so absolute PSNR is
lower than published numbers and the *deep and wide* variants (tasks 3 and 8, EDSR-baseline)
are handicapped most: they have more to learn per iteration. Whether an answer holds with more
compute is the question of {doc}`ladder`: the contested factors re-run at 4x (and 16x) the
`cpu` budget (profiles `cpu4`, `cpu16`: the same recipe and schedule shape with 4x / 16x the
iterations). The perceptual loss of
task 11 uses an ImageNet-trained EfficientNet-Lite0 feature extractor under this profile
(the VGG19 weights need a download); its rows say so.

To run the paper recipe on a GPU machine: `make book PROFILE=paper` (fetches DIV2K, trains
300k iterations per variant; `ablation train --task 4 --variant baseline --profile paper` for
one run).

## Controls

- Each task changes one factor against the run it is compared with (the table of contents
  names it); everything else (data, iterations, patch size, seed) is shared.
- Runs are identified by a hash of every setting that changes the numbers, so a finished run
  is reused, never silently mixed with a run of another configuration.
- Evaluation follows the standard protocol (see *Background*): PSNR and SSIM on Y, `scale`
  border pixels shaved, outputs rounded to 8 bits.

### What a seed controls

A run's `seed` sets the two random sources of training, and nothing else (the data, the
held-out validation images and the evaluation are the same for every seed). In
`ablation/train.py`:

```python
torch.manual_seed(config.seed)  # identical init on every rank
model = build_model(spec, scale).to(device)
...
gen = torch.Generator(device=device)
gen.manual_seed(config.seed * 1009 + rank + 1)
sampler = PatchSampler(decoded, config.lr_patch, ...)
```

The first line fixes the initial weights; the generator fixes the order of the training
patches (which image, where, which flip), one stream per rank. Seed *k* of two variants
therefore shares the patch order but not the weights (different architectures draw different
initial weights from the same stream).

## Statistics

**One aggregation rule.** Every number of a run, on every page, is the mean over every seed of
it in the results folder; tables say how many seeds. A page trains only the seeds it is given
(seed 0 by default), but shows whatever seeds are on disk. A seed whose training blows up
(the loss becomes NaN/inf or over 100x its best) is an outcome of the recipe, not a run to
redo with other settings: its folder keeps `diverged.json` (where and why), the task page's
answer names it, the README's seeds column counts it, and the interval rests on the seeds that
finished.

**Effects and their intervals.** An effect is a variant's PSNR minus the PSNR of the run it is
compared with, in dB, per benchmark set and for the mean of the sets (each set weighs the
same). Its 95% confidence interval accounts for the two sources of variation a reader cares
about:

- *seeds*: a new training run of the same configuration scores differently. Each side
  contributes the variance of its per-seed scores divided by its number of seeds; a computed
  side (bicubic) contributes nothing.
- *images*: the benchmark images are a sample. Both sides are scored on the same images, so
  the per-image differences (each image's PSNR first averaged over seeds) are paired; they
  contribute their variance divided by the number of images.

The components are added and the interval is the estimate ± t × √variance, with the
Welch-Satterthwaite degrees of freedom (F. E. Satterthwaite, "An approximate distribution of
estimates of variance components", *Biometrics Bulletin* 2(6), 1946; B. L. Welch, "The
generalization of 'Student's' problem when several different population variances are
involved", *Biometrika* 34, 1947), so an interval resting on three seeds is as wide as three
seeds warrant. Splitting the variance of a benchmark result into its training-seed and
test-data parts follows X. Bouthillier et al., "Accounting for variance in machine learning
benchmarks", *MLSys* 2021. The image term also carries the seed-by-image noise that the seed
term already counts, so the interval errs on the wide side.

*Why not a bootstrap.* A two-level bootstrap over seeds and images is the other natural
choice, but with three seeds per run its top level can only draw ten distinct sets of seeds,
and percentile intervals from so few units are too narrow (T. C. Hesterberg, "What teachers
should know about the bootstrap", *The American Statistician* 69(4), 2015: the "narrowness
bias" of about √((n−1)/n) and a normal instead of a t quantile). The t-interval is close
to exact under normal errors, and checked by simulation: `tests/test_stats.py` draws synthetic
runs with a known effect and finds 92-98% coverage, and a zero effect called "no difference"
92-98% of the time.

**Verdict.** From the interval alone: *better* when it lies above zero, *worse* when below,
otherwise *no difference detected at this budget*. With **one seed** of a trained run the
seed-to-seed term cannot be estimated: the interval then covers the images (and the other
side's seeds) only, every page says so, and the verdict is marked *provisional*: it says the
images alone would support it, not that another seed would. No number from another run stands
in for the missing term.
"""

CONCLUSION_INTRO = """
# Conclusion

What the results folder supports, computed when this page is built: for each task, the effect
of each variant against the run it is compared with, with its 95% interval and the verdict
that interval gives (method page, *Statistics*), which model scores highest on each set, and
what the compute ladder implies for the contested factors.
"""

FINDINGS_INTRO = """
# Findings at a glance

Every comparison of the study in one plot and one table: the effect of each task's change on
the mean PSNR of the benchmark sets, with its 95% interval and verdict. Each task links to its
page, where the per-set effects, the curves and the crops are.
"""

LADDER_INTRO = """
# Does the answer hold with more compute?

The `cpu` budget shows the networks a few tenths of a percent of the HR pixels the original
study trained on, and four answers point the other way from the original (batch norm, residual
blocks, L2, depth 16). This page re-reads those factors (and channel attention) at 4x and 16x
the `cpu` budget (profiles `cpu4` and `cpu16`: the same recipe and schedule shape, more
iterations), each against the task-4 baseline at the same budget.

It reads **committed runs only** and never trains: a budget without committed runs is marked
*not yet run*. Run one with `ablation train --task 5 --variant batchnorm --scale 2 --profile
cpu4` (the baseline: `--task 4 --variant baseline`; hours on two cores) and rebuild.
"""

RESTYLE_RECIPE = """
## Restyle a figure

Every figure of this book is redrawn from the results folder, without training anything, in
the style, size and formats a paper or a slide needs, into a folder of your choice. In a
notebook started in the repository (or with `ABLATION_RESULTS` pointing at its `results/`):

```python
from ablation import report

report.cost_figure("cpu", scale=2, style="seaborn-v0_8-paper",  # a style name or an rc dict
                   figsize=(3.5, 2.6), formats=("pdf", "svg"), out_dir="my-figures")
```

`style` is any matplotlib style name, `.mplstyle` file or rc dict (e.g.
`{"font.size": 7, "legend.fontsize": 6, "savefig.dpi": 300}`), applied over the book's look;
`formats` any of png, svg and pdf. SVG text stays text (editable in Inkscape or Illustrator),
and the same figure is written byte for byte the same. On a task page the same arguments work
for `report.training_curves(runs, ...)` and `report.visual_comparison(runs, ...)`.
"""
