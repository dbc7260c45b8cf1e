"""A forward result as a Document: y, s and the per-column statistics; and what forward and grad share.

Both commands start from the same :class:`~bncli.model.Model`: :func:`model_document`
gives it the json keys, the table view's first line and the --save-running file they
have in common.
"""

from __future__ import annotations

import numpy as np

from ..commands import ForwardResult
from ..document import Document, Part
from ..io.write import format_json
from ..model import Model, require_finite

STAT_NAMES = ("mean", "var", "std", "weight", "bias")
STD_LABEL = "std = √(var + ε)"


def forward_document(result: ForwardResult, save_running: str | None = None) -> Document:
    return model_document(result.model, _forward_parts(result), save_running=save_running)


def model_document(model: Model, parts: list[Part], save_running: str | None) -> Document:
    """``parts`` around what every forward and grad output carries, with the --save-running file if asked for."""
    files = []
    if save_running and model.updated is not None:
        files.append(("--save-running", save_running, format_json(_running_record(model))))
    return Document(
        parts,
        model.columns,
        _describe(model),
        _meta_json(model),
        model.data.has_header,
        files=files,
        require_finite=require_finite,
    )


def _forward_parts(result: ForwardResult) -> list[Part]:
    model = result.model
    bn, columns = model.bn, model.columns
    stats = np.vstack([bn.mean, bn.var, bn.std, model.weight, model.bias]).astype(np.float64)
    stats_table, stats_columns, stats_labels, stats_label_header = _stats_rows(model, stats)
    stats_title = f"per-column statistics ({model.mode} mode)"
    return [
        Part(
            "y", lambda: {"y": bn.y}, [lambda r: r.matrix("y = w·s + b", bn.y, columns)], lambda: (bn.y, columns, None)
        ),
        Part(
            "s",
            lambda: {"s": bn.s},
            [lambda r: r.matrix("s = (x − mean) / std", bn.s, columns)],
            lambda: (bn.s, columns, None),
            in_table=False,
        ),
        Part(
            "stats",
            lambda: {"mean": bn.mean, "var": bn.var, "std": bn.std} | _running_json(model),
            [lambda r: r.matrix(stats_title, stats_table, stats_columns, stats_labels, stats_label_header)],
            lambda: (stats, ["statistic", *columns], list(STAT_NAMES)),
            in_table=result.stats,
        ),
    ]


def _meta_json(model: Model) -> dict:
    """What every full json of forward and grad carries besides the parts."""
    return {
        "columns": model.columns,
        "eps": model.eps,
        "weight": model.weight,
        "bias": model.bias,
        "mode": model.mode,
        "dtype": model.dtype,
    }


def _running_json(model: Model) -> dict:
    extra = {}
    if model.batch_stats is not None:
        extra["batch"] = {"mean": model.batch_stats.mean, "var": model.batch_stats.var}
    if model.updated is not None:
        extra["running"] = {"mean": model.updated.mean, "var": model.updated.var, "batches": model.updated.batches}
    return extra


def _stats_rows(model: Model, stats: np.ndarray):
    # The json key and csv label stay "std"; a person reading the table is told that ε is in it.
    labels = [STD_LABEL if name == "std" else name for name in STAT_NAMES]
    rows = [stats]
    if model.batch_stats is not None:
        labels += ["batch mean", "batch var"]
        rows.append(np.vstack([model.batch_stats.mean, model.batch_stats.var]))
    if model.updated is not None:
        labels += ["running mean (saved)", "running var (saved)"]
        rows.append(np.vstack([model.updated.mean, model.updated.var]))
    if model.running is not None:
        labels = ["running mean", "running var", *labels[2:]]
    return np.vstack(rows).astype(np.float64), model.columns, labels, "statistic"


def _describe(model: Model) -> str:
    k, n = model.data.shape
    stats = "running statistics" if model.mode == "eval" else "batch statistics"
    mode = f"{model.mode} mode ({stats})"
    return f"{model.data.source}: {k} rows × {n} columns · eps {model.eps:g} · {mode} · {model.dtype}"


def _running_record(model: Model) -> dict:
    updated = model.updated
    return {
        "columns": model.columns,
        "mean": updated.mean,
        "var": updated.var,
        "momentum": updated.momentum,
        "batches": updated.batches,
    }
