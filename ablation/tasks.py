"""The study as data: eleven tasks, each a list of variants (a spec plus training overrides).

This table drives the notebooks (one per task), the sweep, the tests and the book's table of
contents. The study is *controlled*: each variant differs from its task's baseline only in the
factor the task is about (see the book's "differences from the original study" page).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ablation.config import SCALES, base_profile
from ablation.errors import ConfigError, check_choice
from ablation.models import ModelSpec

LOSSES = ("l1", "l2", "perceptual")


@dataclass(frozen=True)
class Variant:
    """One configuration of the study: an architecture plus what training does differently.

    ``spec=None`` is the protocol's bicubic upsampling, the computed reference every table
    shows: it resolves, runs and is stored like a variant, but is evaluated, never trained.
    """

    name: str
    label: str
    spec: ModelSpec | None
    loss: str | None = "l1"
    cpu: bool = True  # run in the cpu profile (False: too costly here, "needs a GPU")
    note: str = ""
    # profile -> TrainConfig fields this variant trains with instead of the profile's defaults
    # (JSON-friendly; recorded in run.json and the config hash like any other setting)
    profile_overrides: dict[str, dict] = field(default_factory=dict)
    # (task, variant) runs this variant is also measured against, beside its task's first
    # compare_to (the diagnostic depth16_kaiming: against depth16, which differs in init only)
    compare_also: tuple[tuple[int, str], ...] = ()

    def __post_init__(self):
        if self.trainable:
            check_choice("loss", self.loss, LOSSES)

    @property
    def trainable(self) -> bool:
        """False for the computed reference (bicubic)."""
        return self.spec is not None

    def overrides(self, profile: str) -> dict:
        """The TrainConfig fields this variant changes under ``profile`` (the ladder's
        cpu4/cpu16 take the cpu profile's: they scale its recipe)."""
        return dict(self.profile_overrides.get(base_profile(profile), {}))


@dataclass(frozen=True)
class Task:
    """A question, its variants, and the runs they are compared against."""

    number: int
    slug: str
    title: str
    question: str
    variants: tuple[Variant, ...]
    scales: tuple[int, ...] = (2,)
    # (task number, variant name) runs shown beside this task's own variants as baselines
    compare_to: tuple[tuple[int, str], ...] = ()
    original: dict = field(default_factory=dict)  # original study's notes for this task
    # reference variants that are computed, not trained (the reference task's bicubic)
    computed: tuple[Variant, ...] = ()

    @property
    def key(self) -> str:
        return f"task{self.number:02d}"

    def page(self, scale: int) -> str:
        """The name of the task's book page at ``scale`` ('task04-x2'; under book/tasks/)."""
        return f"{self.key}-x{scale}"

    def variant(self, name: str) -> Variant:
        """The variant (trained or computed) called ``name``."""
        every = [*self.computed, *self.variants]
        check_choice(f"variant of task {self.number}", name, [v.name for v in every])
        return next(v for v in every if v.name == name)


# Task 1-3: networks on bicubic-upsampled input (SRCNN style), bias-free as in the original.
SRCNN3 = ModelSpec(input="bicubic", n_blocks=1, n_feats=64, bias=False, global_residual=False)
# Task 4 onward: the baseline runs in LR space: head + 6 conv-ReLU + tail = 8 convs, pixel
# shuffle, feature-space global residual, bias-free like tasks 1-3 (the original task 4 had 32
# channels; here 64 so that tasks 5-11 differ from it in one factor only). The upsampler's
# conv keeps its bias in every variant.
BASELINE = ModelSpec(input="lr", n_blocks=6, n_feats=64, block="conv", act="relu", bias=False)
EDSR_BASELINE = ModelSpec(input="lr", n_blocks=16, n_feats=64, block="res", bias=True,
                          body_conv=True, mean_shift=True)
RCAN = ModelSpec(input="lr", n_blocks=4, n_groups=10, n_feats=64, block="rcab", reduction=16,
                 body_conv=True, mean_shift=True)

_base = Variant("baseline", "baseline (8 conv, LR input)", BASELINE)

TASKS: dict[int, Task] = {t.number: t for t in [
    Task(1, "bicubic-3layers", "Three layers on bicubic input",
         "How well does a 3-layer CNN on bicubic-upsampled input do at x2, x3 and x4?",
         (Variant("3layers", "3 layers", SRCNN3),), scales=SCALES),
    Task(2, "global-residual", "Global residual connection",
         "Does adding the bicubic input to the output (learning only the residual) help?",
         (Variant("3layers_grc", "3 layers + global residual",
                  replace(SRCNN3, global_residual=True)),),
         compare_to=((1, "3layers"),)),
    Task(3, "bicubic-8layers", "Depth on bicubic input",
         "Does going from 3 to 8 layers help a globally residual bicubic-input CNN?",
         (Variant("8layers_grc", "8 layers + global residual",
                  replace(SRCNN3, n_blocks=6, global_residual=True)),),
         compare_to=((2, "3layers_grc"),)),
    Task(4, "upsampling", "Upsampling at the end",
         "Is it better to run the CNN on the LR image and upsample at the end (pixel shuffle)?",
         (_base,), compare_to=((3, "8layers_grc"),)),
    Task(5, "batch-norm", "Batch normalisation",
         "Does batch normalisation after each body conv help?",
         (Variant("batchnorm", "baseline + batch norm", replace(BASELINE, block="conv_bn")),),
         compare_to=((4, "baseline"),)),
    Task(6, "residual-blocks", "Residual blocks",
         "Do residual blocks beat plain conv-ReLU layers at the same number of convolutions?",
         (Variant("resblocks", "3 residual blocks (6 convs)",
                  replace(BASELINE, block="res", n_blocks=3)),),
         compare_to=((4, "baseline"),)),
    Task(7, "activations", "LeakyReLU and PReLU",
         "Does a leaky or learned negative slope beat ReLU?",
         (Variant("leakyrelu", "LeakyReLU(0.01)", replace(BASELINE, act="lrelu")),
          Variant("prelu", "PReLU (per channel)", replace(BASELINE, act="prelu"))),
         compare_to=((4, "baseline"),)),
    Task(8, "depth-width", "Depth and width",
         "What do more layers or more channels buy at a fixed training budget?",
         (Variant("depth16", "16 layers", replace(BASELINE, n_blocks=14)),
          Variant("depth32", "32 layers", replace(BASELINE, n_blocks=30)),
          Variant("width96", "96 channels", replace(BASELINE, n_feats=96)),
          Variant("width128", "128 channels", replace(BASELINE, n_feats=128)),
          Variant("depth16_kaiming", "16 layers, He-init body (diagnostic)",
                  replace(BASELINE, n_blocks=14, init="kaiming"),
                  note="not in the original study: depth 16 with a variance-preserving "
                       "(He/Kaiming-normal, fan_in, ReLU gain) body init, to ask whether depth "
                       "helps once the body trains",
                  compare_also=((8, "depth16"),))),
         compare_to=((4, "baseline"),)),
    Task(9, "l2-loss", "L1 vs L2 loss",
         "Does training with L2 (MSE) instead of L1 change PSNR?",
         (Variant("l2", "L2 loss", BASELINE, loss="l2"),), compare_to=((4, "baseline"),)),
    Task(10, "channel-attention", "Channel attention",
         "Does channel attention (RCAB blocks) help at equal conv count?",
         (Variant("rcab", "3 RCABs (6 convs), reduction 16",
                  replace(BASELINE, block="rcab", n_blocks=3)),
          Variant("rcan", "RCAN-style reference: 10 groups x 4 RCABs", RCAN, cpu=False,
                  note="about 8x the baseline's compute: needs a GPU (paper profile)")),
         compare_to=((4, "baseline"), (6, "resblocks"))),
    Task(11, "perceptual-loss", "Perceptual loss",
         "What does a VGG feature loss do to PSNR and SSIM?",
         (Variant("perceptual", "VGG19 conv5_4 feature loss", BASELINE, loss="perceptual",
                  note="needs VGG19 ImageNet weights (vgg19-dcbb9e9d.pth)"),),
         compare_to=((4, "baseline"),)),
]}

# Reference models outside the tasks: the protocol's bicubic (computed, shown on every page)
# and EDSR-baseline (trained).
BICUBIC = Variant("bicubic", "bicubic (MATLAB)", None, loss=None)
# EDSR-baseline diverges at the cpu profile's 2e-3 peak learning rate (x2, seed 0: L1 loss 0.028
# at iteration 250, 3.2 at 300, 7e9 at 500; validation PSNR 8.7 dB), so the cpu profile trains
# it with a 4x lower peak; the paper profile is the EDSR recipe (1e-4) unchanged.
EDSR_CPU_LEARNING_RATE = 5e-4
REFERENCE = Task(0, "reference", "Reference models",
                 "Where do the small nets stand against bicubic and EDSR-baseline?",
                 (Variant("edsr_baseline", "EDSR-baseline (16 res blocks, 64 feats)",
                          EDSR_BASELINE,
                          note=f"cpu profile: peak learning rate {EDSR_CPU_LEARNING_RATE:g} "
                               "(diverges at 2e-3)",
                          profile_overrides={"cpu": {"learning_rate": EDSR_CPU_LEARNING_RATE}}),),
                 scales=SCALES, computed=(BICUBIC,))


# The compute ladder (config.LADDER): the contested factors re-run at 4x (and 16x) the cpu
# budget at x2, each against the task-4 baseline, to see whether an answer holds with compute.
LADDER_BASELINE = (4, "baseline")
LADDER_FACTORS = ((5, "batchnorm"), (6, "resblocks"), (8, "depth16"), (9, "l2"), (10, "rcab"))
LADDER_SCALE = 2

TASK_RANGE = f"{min(TASKS)}-{max(TASKS)}"  # every task, as ``--tasks`` takes it ("1-11")


def get_task(number: int) -> Task:
    if number == 0:
        return REFERENCE
    check_choice("task", number, list(TASKS))
    return TASKS[number]


def parse_tasks(text: str) -> list[int]:
    """'1-3,5' -> [1, 2, 3, 5]. Every number and range end is checked against the task table
    *before* a range is expanded (``1-1000000000`` is refused, not materialised); a reversed
    range (``5-3``) or an empty selection is an error, not a silent no-op."""
    valid = ", ".join(str(n) for n in TASKS)
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        lo_text, dash, hi_text = part.partition("-")
        try:
            lo, hi = int(lo_text), int(hi_text) if dash else int(lo_text)
        except ValueError:
            raise ConfigError(f"--tasks: {part!r} is not a task number or range (e.g. "
                              f"{TASK_RANGE} or 1,3,5); valid tasks: {valid}") from None
        for n in (lo, hi):
            check_choice("task", n, list(TASKS))
        if lo > hi:
            raise ConfigError(f"--tasks: reversed range {part!r}; write it as {hi}-{lo}")
        out.extend(range(lo, hi + 1))
    if not out:
        raise ConfigError(f"--tasks: no task given; e.g. {TASK_RANGE} or 1,3,5 (valid: {valid})")
    return out


def all_variants(include_reference: bool = True):
    """Yield (task, variant, scale) for every trained run of the study."""
    tasks = list(TASKS.values()) + ([REFERENCE] if include_reference else [])
    for task in tasks:
        for variant in task.variants:
            for scale in task.scales:
                yield task, variant, scale
