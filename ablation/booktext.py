"""The hand-written prose of the generated study pages (method, results, conclusion).

:mod:`ablation.book` puts these texts around the code cells of ``notebooks/method.ipynb``,
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
task 1 and the reference models also at x3 and x4) in an afternoon: about four hours of
training and evaluation on two cores (the *Compute* section of {doc}`results` lists the wall
time of every run and the total). Three choices follow:

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
are handicapped most: they have more to learn per iteration. Differences between variants
that are small compared with the seed-noise band are not findings. The perceptual loss of
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
- With several seeds, tables show mean ± standard deviation, and a difference counts as a
  finding only when it exceeds twice the standard deviation of the task-4 baseline over seeds
  (the seed-noise band). With one seed the band is unknown, and the pages say so.
- Evaluation follows the standard protocol (see *Background*): PSNR and SSIM on Y, `scale`
  border pixels shaved, outputs rounded to 8 bits.
"""

CONCLUSION_INTRO = """
# Conclusion

What the results folder supports, computed when this page is built: for each task, which model
wins on each set and by how much it differs from the run it is compared with, judged against
the seed-noise band. A difference inside the band, or with an unknown band, is not a finding.
"""
