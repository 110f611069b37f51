"""What the book's notebooks show: run a task, tabulate, plot, compare, conclude.

Each notebook of the book makes one call per section (``report.run_task(...)``,
``report.results_table(runs)``, ...), and every call is importable from here. Underneath, one
private module per concern, each with one kind of dependency:

- ``_running``: run (or reuse) what a page shows via :func:`ablation.runs.run_variant`;
- ``_tables``: the results folder as DataFrames (pandas only; the tests run these on a
  synthetic results folder);
- ``_html``: HTML fragments, number formats, the profile banner, the rendered tables;
- ``_figures``: matplotlib figures, saved as PNG and SVG;
- ``_probes``: what needs the trained checkpoints (crops for the visual comparison, body gain);
- ``_prose``: the generated sentences of the conclusions;
- ``_pages``: the section calls of the task, results, conclusion and method pages.

Which runs a page needs is :mod:`ablation.planning` (the sweep plans the same runs), the
original study's and published numbers are :mod:`ablation.literature`. Every page states the
profile its numbers come from; a ``smoke`` profile is flagged with :data:`SMOKE_WARNING`.
"""

from ablation.literature import ORIGINAL_CAVEATS, ORIGINAL_README, PUBLISHED, original_psnr
from ablation.planning import (
    NOISE_RUN,
    NOISE_SCALE,
    NOISE_SEEDS,
    PlannedRun,
    planned_runs,
    study_rows,
)

from ._figures import FigureFiles, curves_figure, figures_dir, new_figure, save_figure
from ._html import (
    SMOKE_WARNING,
    Html,
    profile_banner,
    render_study_table,
    render_task_table,
)
from ._pages import (
    compute_table,
    conclusion,
    cost_figure,
    method_profiles,
    results_table,
    study_conclusion,
    study_results,
    training_curves,
    visual_comparison,
)
from ._probes import best_crop, body_gain, comparison_panels, sr_crop
from ._prose import (
    NOISE_EXPLAINED,
    answer_sentence,
    conclusion_text,
    fit_sentence,
    noise_band_text,
)
from ._running import TaskRuns, run_one, run_references, run_task
from ._tables import (
    RUN_COLUMNS,
    NoiseBand,
    aggregate_seeds,
    final_losses,
    load_histories,
    load_runs,
    noise_bands,
    profiles_table,
    study_table,
    task_table,
)

__all__ = [
    "NOISE_EXPLAINED", "NOISE_RUN", "NOISE_SCALE", "NOISE_SEEDS", "ORIGINAL_CAVEATS",
    "ORIGINAL_README", "PUBLISHED", "RUN_COLUMNS", "SMOKE_WARNING", "FigureFiles", "Html",
    "NoiseBand", "PlannedRun", "TaskRuns", "aggregate_seeds", "answer_sentence", "best_crop",
    "body_gain", "comparison_panels", "compute_table", "conclusion", "conclusion_text",
    "cost_figure", "curves_figure", "figures_dir", "final_losses", "fit_sentence", "load_histories",
    "load_runs", "method_profiles", "new_figure", "noise_band_text", "noise_bands",
    "original_psnr", "planned_runs", "profile_banner", "profiles_table", "render_study_table",
    "render_task_table", "results_table", "run_one", "run_references", "run_task",
    "save_figure", "sr_crop", "study_conclusion", "study_results", "study_rows", "study_table",
    "task_table", "training_curves", "visual_comparison",
]
