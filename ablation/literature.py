"""Published numbers the study is read against, typed in from the references.

- :data:`ORIGINAL_README`: the original study's README table (authierj/EDSR-PyTorch), with
  :data:`ORIGINAL_CAVEATS` for rows that can't be taken at face value
  (``shared/reference/original-study.md``);
- :data:`PUBLISHED`: reference rows of the literature (bicubic, SRCNN, VDSR, EDSR-baseline)
  from ``shared/reference/published-results.md``.

The report shows them beside this study's runs; nothing here is computed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ablation.config import BENCHMARKS
from ablation.tasks import BICUBIC

# The original study's README table (authierj/EDSR-PyTorch), PSNR in dB on Y; see
# shared/reference/original-study.md. Keys: (task, our variant name, scale).
ORIGINAL_README: dict[tuple[int, str, int], dict[str, float]] = {
    (1, "3layers", 2): dict(Set5=36.504, Set14=32.346, Urban100=29.275, B100=31.212),
    (1, "3layers", 3): dict(Set5=32.366, Set14=29.053, Urban100=25.858, B100=28.186),
    (1, "3layers", 4): dict(Set5=30.041, Set14=27.263, Urban100=24.126, B100=26.682),
    (2, "3layers_grc", 2): dict(Set5=36.722, Set14=32.475, Urban100=29.536, B100=31.318),
    (3, "8layers_grc", 2): dict(Set5=37.432, Set14=33.049, Urban100=30.752, B100=31.809),
    (4, "baseline", 2): dict(Set5=37.335, Set14=32.933, Urban100=30.383, B100=31.697),
    (5, "batchnorm", 2): dict(Set5=37.636, Set14=33.175, Urban100=31.119, B100=31.929),
    (6, "resblocks", 2): dict(Set5=37.629, Set14=33.208, Urban100=31.083, B100=31.938),
    (7, "leakyrelu", 2): dict(Set5=28.151, Set14=26.931, Urban100=25.078, B100=31.945),
    (7, "prelu", 2): dict(Set5=27.652, Set14=26.728, Urban100=24.922, B100=31.944),
    (8, "depth16", 2): dict(Set5=37.686, Set14=33.256, Urban100=31.348, B100=32.012),
    (8, "depth32", 2): dict(Set5=36.918, Set14=32.615, Urban100=29.682, B100=31.478),
    (8, "width96", 2): dict(Set5=37.712, Set14=33.273, Urban100=31.333, B100=31.997),
    (8, "width128", 2): dict(Set5=37.760, Set14=33.331, Urban100=31.478, B100=32.023),
    (9, "l2", 2): dict(Set5=37.533, Set14=33.160, Urban100=31.054, B100=31.902),
    (10, "rcan", 2): dict(Set5=30.119, Set14=28.830, Urban100=26.311, B100=32.215),
    (11, "perceptual", 2): dict(Set5=34.653, Set14=31.025, Urban100=28.457, B100=29.958),
}


# Rows of that table that can't be taken at face value (original-study.md, "Why ...").
ORIGINAL_CAVEATS: dict[int, str] = {
    7: "below bicubic on 3 sets: likely not the trained network",
    10: "below bicubic on 3 sets: likely not the trained network",
    11: "its test log shows BN layers the model never had",
}


@dataclass(frozen=True)
class Published:
    """One published reference row: PSNR/SSIM per set at one scale."""

    method: str
    scale: int
    params: int | None
    source: str
    sets: dict[str, tuple[float, float]]


def _pub(method: str, scale: int, params: int | None, source: str,
         *values: tuple[float, float]) -> Published:
    """Build a :class:`Published` row from values in BENCHMARKS order."""
    return Published(method, scale, params, source, dict(zip(BENCHMARKS, values, strict=True)))


# shared/reference/published-results.md section 1, (PSNR, SSIM) in Set5, Set14, B100, Urban100
# order. EDSR-baseline: torchSR's re-evaluation of the official weights (the one source that
# covers x2, x3 and x4); its parameter counts per scale are the EDSR README's.
PUBLISHED: tuple[Published, ...] = (
    _pub("Bicubic", 2, None, "EDSR paper, Table 3",
         (33.66, 0.9299), (30.24, 0.8688), (29.56, 0.8431), (26.88, 0.8403)),
    _pub("SRCNN", 2, 57_000, "EDSR paper, Table 3",
         (36.66, 0.9542), (32.42, 0.9063), (31.36, 0.8879), (29.50, 0.8946)),
    _pub("VDSR", 2, 665_000, "EDSR paper, Table 3",
         (37.53, 0.9587), (33.03, 0.9124), (31.90, 0.8960), (30.76, 0.9140)),
    _pub("EDSR-baseline", 2, 1_370_000, "torchSR re-evaluation",
         (37.98, 0.9604), (33.57, 0.9174), (32.15, 0.8993), (31.98, 0.9271)),
    _pub("Bicubic", 3, None, "EDSR paper, Table 3",
         (30.39, 0.8682), (27.55, 0.7742), (27.21, 0.7385), (24.46, 0.7349)),
    _pub("SRCNN", 3, 57_000, "EDSR paper, Table 3",
         (32.75, 0.9090), (29.28, 0.8209), (28.41, 0.7863), (26.24, 0.7989)),
    _pub("VDSR", 3, 665_000, "EDSR paper, Table 3",
         (33.66, 0.9213), (29.77, 0.8314), (28.82, 0.7976), (27.14, 0.8279)),
    _pub("EDSR-baseline", 3, 1_550_000, "torchSR re-evaluation",
         (34.37, 0.9270), (30.28, 0.8414), (29.08, 0.8051), (28.15, 0.852)),
    _pub("Bicubic", 4, None, "EDSR paper, Table 3",
         (28.42, 0.8104), (26.00, 0.7027), (25.96, 0.6675), (23.14, 0.6577)),
    _pub("SRCNN", 4, 57_000, "EDSR paper, Table 3",
         (30.48, 0.8628), (27.49, 0.7503), (26.90, 0.7101), (24.52, 0.7221)),
    _pub("VDSR", 4, 665_000, "EDSR paper, Table 3",
         (31.35, 0.8838), (28.01, 0.7674), (27.29, 0.7251), (25.18, 0.7524)),
    _pub("EDSR-baseline", 4, 1_520_000, "torchSR re-evaluation",
         (32.09, 0.8936), (28.58, 0.7804), (27.56, 0.7354), (26.03, 0.7842)),
)


def original_psnr(task: int, variant: str, scale: int) -> dict[str, float] | None:
    """The original study's PSNR per set for a run (its README table; bicubic: the published
    bicubic row it compared against), or None."""
    if variant == BICUBIC.name:
        pub = [p for p in PUBLISHED if p.method == "Bicubic" and p.scale == scale]
        return {s: v[0] for s, v in pub[0].sets.items()} if pub else None
    return ORIGINAL_README.get((task, variant, scale))


@dataclass(frozen=True)
class OriginalBudget:
    """The original study's best logged B100 PSNR of a run and the budget it trained with."""

    b100: float
    iterations: int  # epochs x iterations per epoch
    hr_patch: int
    batch: int = 16
    note: str = ""

    @property
    def hr_pixels(self) -> int:
        """HR pixels seen in training: iterations x batch x HR patch area."""
        return self.iterations * self.batch * self.hr_patch ** 2


# shared/reference/original-study.md, "The variants as they ran" (B100 best in log) and
# "Common recipe": 299 epochs of 1,007 iterations (tasks 4, 5, 8, 9) or 2,013 (task 6), batch
# 16, HR patch 96 (task 6: 192), x2. Only the runs of the compute ladder; the original task 10
# ran a full RCAN, not this study's 3 RCABs, so it has no marker.
ORIGINAL_B100_BEST: dict[tuple[int, str], OriginalBudget] = {
    (4, "baseline"): OriginalBudget(31.697, 299 * 1007, 96, note="32 channels (ours: 64)"),
    (5, "batchnorm"): OriginalBudget(31.929, 299 * 1007, 96),
    (6, "resblocks"): OriginalBudget(32.014, 299 * 2013, 192),
    (8, "depth16"): OriginalBudget(32.012, 299 * 1007, 96),
    (9, "l2"): OriginalBudget(31.902, 299 * 1007, 96),
}
