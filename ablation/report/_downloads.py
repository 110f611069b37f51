"""Every run's numbers as one CSV and one JSON file, linked from the results page.

The files travel inside the page as ``data:`` links (``<a download>``), so the published book,
the downloadable notebook and a JupyterLab session all offer them without a file server or a
copy step. No machine path goes in: a run is named by its key under ``results/<profile>``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pandas as pd

from ablation import paths
from ablation import results as results_mod

from ._html import Html, esc

RUN_FIELDS = ("task", "variant", "label", "scale", "seed", "profile", "config_hash", "loss",
              "params", "flops_per_pixel", "flops_1280x720", "iterations", "train_seconds",
              "eval_seconds", "cpu_share", "conv_gflops", "device", "body_gain")
CSV_COLUMNS = ("run", *RUN_FIELDS, "set", "psnr", "ssim")


def run_records(profile: str, results_dir=None) -> list[dict]:
    """One dict per finished run: ``run`` (its key, e.g. 'task04/baseline/x2/seed0'), the
    fields of :data:`RUN_FIELDS` and ``sets`` ({set: {psnr, ssim}}), sorted by key."""
    root = paths.results_dir(results_dir) / profile
    out = []
    for m in results_mod.iter_metrics(profile, results_dir):
        key = Path(m["run_dir"]).relative_to(root).as_posix()
        out.append({"run": key, **{k: m.get(k) for k in RUN_FIELDS},
                    "sets": {s: {"psnr": v.get("psnr"), "ssim": v.get("ssim")}
                             for s, v in (m.get("sets") or {}).items()}})
    return sorted(out, key=lambda r: r["run"])


def runs_csv(records: list[dict]) -> str:
    """The records as CSV, one row per run and benchmark set."""
    rows = [{**{k: r[k] for k in ("run", *RUN_FIELDS)}, "set": s, **v}
            for r in records for s, v in r["sets"].items()]
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS)).to_csv(index=False)


def runs_json(records: list[dict]) -> str:
    """The records as indented JSON (one object per run)."""
    return json.dumps(records, indent=1) + "\n"


def download_links(profile: str = "cpu", results_dir=None) -> Html:
    """Links to ``sr-ablation-<profile>-runs.csv`` and ``.json``: every finished run's numbers."""
    records = run_records(profile, results_dir)
    if not records:
        return Html("<p>No finished runs yet: nothing to download.</p>", "no runs")
    links = []
    for ext, mime, text in (("csv", "text/csv", runs_csv(records)),
                            ("json", "application/json", runs_json(records))):
        name = f"sr-ablation-{profile}-runs.{ext}"
        data = base64.b64encode(text.encode()).decode()
        links.append(f'<a class="ablation-download" download="{esc(name)}" '
                     f'href="data:{mime};base64,{data}">{esc(name)}</a>')
    html = (f"<p>Every finished run of profile <code>{esc(profile)}</code> ({len(records)} "
            f"runs): {' and '.join(links)}. CSV: one row per run and benchmark set (PSNR in "
            "dB, SSIM on Y); JSON: one object per run with its settings hash, costs and wall "
            "times.</p>")
    return Html(html, f"{len(records)} runs: CSV and JSON")
