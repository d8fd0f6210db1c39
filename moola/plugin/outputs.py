"""What a gate leaves besides its record: its exported model and its plots; and the
handling of a full disk met while writing any output."""

from __future__ import annotations

import warnings

import pytest

from moola.plugin.keys import DISK_FULL_KEY, PLOTS_KEY, SESSION_KEY, MoolaGateWarning

def export_model(config: pytest.Config, ctx, verdict) -> None:
    """Export the gate's model when its verdict approves it; the record says where
    (``artifacts.model_export``). A failed export never hides the verdict: a full disk stops the
    session like any full disk, another error is a warning; either makes the exit code
    non-zero (the controller reads it from the record, see JsonReportHooks._append)."""
    import traceback

    from moola.diskspace import as_disk_full, is_disk_full
    from moola.export.exporter import export_after_gate

    if not ctx.cfg.run.export_models:
        return

    try:
        entry = export_after_gate(ctx, verdict)
    except Exception as exc:
        if is_disk_full(exc):  # said once, in the summary's "disk full" section
            full = as_disk_full(exc, [ctx.reports, ctx.cache.root])
            disk_full(config, full)
            entry = {"path": None, "error": f"exporting the model failed: {full}"}
        else:
            entry = {"path": None, "error": f"exporting the model failed: "
                                            f"{type(exc).__name__}: {exc}",
                     "traceback": traceback.format_exc()}
            warnings.warn(MoolaGateWarning(f"{verdict.gate}: {entry['error']}"))
    if entry is not None:
        verdict.artifacts = {**verdict.artifacts, "model_export": entry}


def write_plots(config: pytest.Config, ctx, verdict) -> None:
    """Queue the gate's learning curve and confusion matrix PNGs for the plot process."""
    plots = config.stash.get(PLOTS_KEY, None)
    if plots is None:  # matplotlib missing (logged once) or no plot process
        return
    # not ctx.gate_dir(): that creates the folder, and a gate that wrote nothing (gate 0, a
    # skipped gate) must leave no runs/<run_id>/<gate>/ behind
    d = ctx.reports / "runs" / ctx.run_id / verdict.gate
    if (d / "metrics.csv").exists():
        plots.submit("learning_curves", metrics_csv_path=d / "metrics.csv",
                     out_png=d / "learning_curves.png",
                     title=f"{verdict.gate}: {verdict.model} ({verdict.status})")
    cm = verdict.metrics.get("confusion_matrix") if verdict.metrics else None
    if cm:
        plots.submit("confusion_matrix", cm=cm, class_names=list(ctx.dataset.classes),
                     out_png=ctx.gate_dir(verdict.gate) / "confusion_matrix.png",
                     title=f"{verdict.gate}: {verdict.model}")



def disk_full(config: pytest.Config, exc: Exception) -> None:
    """Remember a full disk met while writing outputs: the summary says it, the exit code
    shows it, and the session stops after the current test."""
    errors = config.stash.setdefault(DISK_FULL_KEY, [])
    if not any(getattr(e, "filename", None) == getattr(exc, "filename", None) for e in errors):
        errors.append(exc)  # once per file (report.json is rewritten after every gate)
    session = config.stash.get(SESSION_KEY, None)
    if session is not None and not session.shouldstop:
        session.shouldstop = f"moola: {exc}"

