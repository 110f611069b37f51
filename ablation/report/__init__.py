"""What the book's notebooks show: run a task, tabulate, plot, compare, conclude.

Each notebook of the book makes one call per section (``report.run_task(...)``,
``report.results_table(runs)``, ...), and every call is importable from here. Underneath, one
private module per concern, each with one kind of dependency:

- ``_running``: run (or reuse) what a page shows via :func:`ablation.runs.run_variant`;
- ``_tables``: the results folder as DataFrames (pandas only; the tests run these on a
  synthetic results folder);
- ``_html``: HTML fragments, number formats, the profile banner, the rendered tables;
- ``_downloads``: every run's numbers as CSV and JSON links for the results page;
- ``_figures``: matplotlib figures (``style``, ``figsize``), written by one helper,
  :func:`save_figure` (PNG, SVG with editable text, PDF; byte-identical across reruns);
- ``_probes``: what needs the trained checkpoints (crops for the visual comparison, body gain);
- ``_effects``: every comparison's effect with its 95% interval (:mod:`ablation.stats`), under
  the one aggregation rule of the book (:data:`AGGREGATION_RULE`);
- ``_effect_figures``: forest plots and the compute ladder's curves (``style``, ``figsize``);
- ``_ladder``: the compute ladder, read from committed runs only;
- ``_prose``: the generated sentences of the conclusions;
- ``_findings``: the effects sections, the findings and ladder pages;
- ``_readme``: the README's generated blocks (the findings table, the ladder table);
- ``_pages``: the section calls of the task, results, conclusion and method pages.

Which runs a page needs is :mod:`ablation.planning` (the sweep plans the same runs), the
original study's and published numbers are :mod:`ablation.literature`. Every page states the
profile its numbers come from; a ``smoke`` profile is flagged with :data:`SMOKE_WARNING`.
"""

from ablation.literature import ORIGINAL_CAVEATS, ORIGINAL_README, PUBLISHED, original_psnr
from ablation.models import body_gain
from ablation.planning import PlannedRun, planned_runs, study_rows

from ._downloads import download_links, run_records, runs_csv, runs_json
from ._effect_figures import forest_figure, ladder_figure
from ._effects import (
    AGGREGATION_RULE,
    MEAN_SET,
    Comparison,
    comparisons,
    effects_table,
    per_image,
    primary_comparison,
)
from ._figures import (
    FORMATS,
    FigureFiles,
    comparison_figure,
    cost_plot,
    curves_figure,
    figure_style,
    figures_dir,
    new_figure,
    place_labels,
    save_figure,
)
from ._findings import (
    effects,
    findings,
    findings_plot,
    forest_plot,
    forest_rows,
    ladder_conclusion,
    ladder_curves,
    ladder_tables,
    render_effects,
    study_hours,
)
from ._html import (
    SMOKE_WARNING,
    Html,
    profile_banner,
    render_study_table,
    render_task_table,
)
from ._ladder import change, ladder_effects, ladder_points, ladder_status, most_moved_factor
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
from ._probes import best_crop, body_gains, comparison_panels, sr_crop
from ._prose import answer_sentence, conclusion_text, fit_sentence
from ._readme import readme_findings, readme_ladder, update_readme
from ._running import TaskRuns, run_one, run_references, run_task
from ._tables import (
    RUN_COLUMNS,
    aggregate_seeds,
    final_losses,
    load_histories,
    load_runs,
    profiles_table,
    study_table,
    task_table,
)

__all__ = [
    "AGGREGATION_RULE", "Comparison", "FORMATS", "FigureFiles", "Html", "MEAN_SET",
    "ORIGINAL_CAVEATS", "ORIGINAL_README", "PUBLISHED", "PlannedRun", "RUN_COLUMNS",
    "SMOKE_WARNING", "TaskRuns", "aggregate_seeds", "answer_sentence", "best_crop", "body_gain",
    "body_gains", "change", "comparison_figure", "comparison_panels", "comparisons",
    "compute_table", "conclusion", "conclusion_text", "cost_figure", "cost_plot", "curves_figure",
    "download_links", "effects", "effects_table", "figure_style", "figures_dir", "final_losses",
    "findings", "findings_plot", "fit_sentence", "forest_figure", "forest_plot", "forest_rows",
    "ladder_conclusion", "ladder_curves", "ladder_effects", "ladder_figure", "ladder_points",
    "ladder_status", "ladder_tables", "load_histories", "load_runs", "method_profiles",
    "most_moved_factor", "new_figure", "original_psnr", "per_image", "place_labels",
    "planned_runs", "primary_comparison", "profile_banner", "profiles_table", "readme_findings",
    "readme_ladder", "render_effects", "render_study_table", "render_task_table", "results_table",
    "run_one", "run_records", "run_references", "run_task", "runs_csv", "runs_json", "save_figure",
    "sr_crop", "study_conclusion", "study_hours", "study_results", "study_rows", "study_table",
    "task_table", "training_curves", "update_readme", "visual_comparison",
]
