"""Report section of the classification stage: per network, every model side by side.

Read from ``classification/network-*/``: each model's metrics (with 95 %
intervals and permutation p), its out-of-fold predictions (drawn as ROC curves
and confusion matrices), per-fold results, the permutation null and the CNN's
training curves. The cross-validation scope is stated in words, and called
transductive when the group features saw the test participants.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from rsxai.report.charts import confusion_chart, null_chart, roc_chart, training_chart
from rsxai.report.html import (
    details,
    error_box,
    escape,
    figure,
    format_number,
    format_p,
    gallery,
    guarded,
    note,
    paragraph,
    table,
)

if TYPE_CHECKING:
    from rsxai.report.folder import ReportFolder

#: Models in the order shown: the CNN first, then its baselines.
MODEL_ORDER = ("cnn", "svm", "logistic", "screened", "ensemble")
METRICS = (
    ("accuracy", "accuracy"),
    ("balanced_accuracy", "balanced accuracy"),
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
    ("roc_auc", "ROC AUC"),
)

SCOPE_TEXT = {
    "fold": (
        "info",
        "Cross-validation scope: <strong>fold</strong> (inductive). Group ICA, network "
        "labelling and dual regression were fitted again on every training fold; no test "
        "participant's label or series shaped its fold's group maps or model. Two things are "
        "shared by every fold and use no label: the common brain mask, and with it the CNN's "
        "crop box, was built from every participant's brain mask, test participants included "
        "(as FSL's dual_regression builds its mask). And training participants were "
        "dual-regressed onto group maps they shaped, test participants onto maps they did not "
        "shape: a <strong>pessimistic shift</strong> (the test maps fit the group maps less "
        "well than the maps the classifier learnt from), so these accuracies may be slightly "
        "pessimistic.",
    ),
    "cohort": (
        "warning",
        "Cross-validation scope: <strong>cohort</strong> — <strong>transductive</strong>. Group "
        "ICA and network labelling were fitted once on every participant, the test "
        "participants of each fold included, before cross-validation. Their data shaped the "
        "features the classifier was tested on, so these accuracies may be optimistic; they "
        "are not estimates for new participants. Compared with fold-scope accuracies of the "
        "same data, where training participants are dual-regressed onto maps they shaped and "
        "test participants are not (a pessimistic shift), every participant here is projected "
        "on maps it shaped: the difference between the two scopes mixes this optimism with "
        "that shift, and is not a measure of the leak alone.",
    ),
    "external maps": (
        "warning",
        "Cross-validation scope: <strong>external maps</strong> — possibly "
        "<strong>transductive</strong>. The group maps were made outside rsxai (imported with "
        "<code>--group-maps</code>, e.g. MELODIC's melodic_IC, or those behind an FSL "
        "dual_regression folder or a stack of subject maps) and used as given in every fold, "
        "never refitted on its training participants; rsxai cannot know whether they saw the "
        "test participants. If they were estimated on the whole cohort, as usual, this is the "
        "cohort scope and accuracies may be optimistic.",
    ),
}


def _model_key(model: str) -> tuple[int, str]:
    return (MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER), model)


def _interval(entry: Any) -> str:
    if not isinstance(entry, dict):
        return format_number(entry)
    text = format_number(entry.get("value"))
    if entry.get("ci_low") is not None and entry.get("ci_high") is not None:
        text += f" [{format_number(entry['ci_low'])}, {format_number(entry['ci_high'])}]"
    return text


def _binomial(values: dict) -> dict:
    """The binomial test, as ``{"p_value", "chance"}`` whichever way the file writes it."""
    if isinstance(values.get("binomial"), dict):
        return values["binomial"]
    return {"p_value": values.get("binomial_p_value"), "chance": values.get("chance_level")}


def _interval_methods(metrics: dict[str, dict]) -> str:
    """ "accuracy: Clopper-Pearson; ..." from the ``method`` the files give each interval."""
    methods: dict[str, str] = {}
    for values in metrics.values():
        for key, name in METRICS:
            entry = values.get(key)
            if isinstance(entry, dict) and entry.get("method"):
                methods.setdefault(name, str(entry["method"]))
    return "; ".join(f"{name}: {escape(method)}" for name, method in methods.items())


def _stacked(value: str, detail: str = "") -> str:
    """A cell's number with its interval or qualifier on a quieter second line (HTML).

    Stacking keeps the metrics table within a 1200 px window; the space before
    the detail keeps the two apart where the style sheet is not applied.
    """
    if not detail:
        return escape(value)
    return f'{escape(value)} <span class="detail">{escape(detail)}</span>'


def _interval_cell(entry: Any) -> str:
    if not isinstance(entry, dict):
        return _stacked(format_number(entry))
    detail = ""
    if entry.get("ci_low") is not None and entry.get("ci_high") is not None:
        detail = f"[{format_number(entry['ci_low'])}, {format_number(entry['ci_high'])}]"
    return _stacked(format_number(entry.get("value")), detail)


def _metrics_table(metrics: dict[str, dict]) -> str:
    rows = []
    for model, values in metrics.items():
        row = {"model": escape(model)}
        for key, name in METRICS:
            row[name] = _interval_cell(values.get(key))
        permutation = values.get("permutation") or {}
        n_permutations = permutation.get("n_permutations")
        row["permutation p"] = (
            _stacked(
                format_p(permutation.get("p_value"), n_permutations),
                f"({format_number(n_permutations)} perm.)" if n_permutations else "",
            )
            if permutation
            else _stacked("not run")
        )
        binomial = _binomial(values)
        row["binomial p"] = _stacked(
            format_p(binomial.get("p_value")),
            f"(chance {format_number(binomial['chance'])})"
            if binomial.get("chance") is not None
            else "",
        )
        repeats = values.get("repeats") or {}
        if repeats.get("n_repeats", 1) > 1 and repeats.get("mean", {}).get("accuracy") is not None:
            row["accuracy over repeats"] = _stacked(
                f"{format_number(repeats['mean']['accuracy'])} ± "
                f"{format_number(repeats['std']['accuracy'])}",
                f"({format_number(repeats['min']['accuracy'])}-"
                f"{format_number(repeats['max']['accuracy'])})",
            )
        rows.append(row)
    # A column only some models fill (e.g. repeats) reads "n/a" for the others.
    frame = pd.DataFrame(rows).fillna(_stacked("n/a"))
    methods = _interval_methods(metrics)
    numbers = [column for column in frame.columns if column != "model"]
    return table(
        frame,
        caption="Out-of-fold metrics, each with its 95 % interval [low, high] below it"
        + (f" ({methods})" if methods else "")
        + "; accuracy over repeats: mean ± SD over the cross-validation repeats, (min-max) "
        "below, a stability figure without interval or p; permutation p: the share of label "
        "permutations whose whole cross-validation scored at least as well; binomial p: "
        "accuracy against the chance level.",
        raw_columns=list(frame.columns),
        numeric_columns=numbers,
    )


def _is_positive(values: pd.Series, positive_label: Any) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return values.astype(int).to_numpy() == 1
    return (values.astype(str) == str(positive_label)).to_numpy()


def _roc(folder: ReportFolder, network: str, models: list[str], metrics: dict) -> str:
    positive = folder.summary.get("subjects", {}).get("positive_label")
    curves = {}
    for model in models:
        path = folder.path("cls_predictions", network=network, model=model)
        if not path.exists():
            continue
        predictions = folder.read_tsv(path)
        repeats = []
        for _, run in predictions.groupby("repeat", sort=True):
            y = _is_positive(run["y_true"], positive)
            if y.all() or not y.any():
                continue
            fpr, tpr, _ = roc_curve(y, run["probability"].to_numpy())
            repeats.append((fpr, tpr))
        if repeats:
            auc = metrics.get(model, {}).get("roc_auc")
            curves[f"{model} (AUC {_interval(auc)})" if auc else model] = repeats
    if not curves:
        return paragraph("No predictions to draw ROC curves from.")
    return figure(
        roc_chart(curves, f"{network}: ROC curves"),
        "ROC curves of the out-of-fold probabilities: thin, each repeat; thick, their "
        "vertical mean. AUC and interval as reported by the classification stage.",
    )


def _confusions(folder: ReportFolder, network: str, models: list[str]) -> str:
    subjects = folder.summary.get("subjects", {})
    positive = subjects.get("positive_label", "positive")
    negative = subjects.get("negative_label") or "negative"
    items = []
    for model in models:
        path = folder.path("cls_predictions", network=network, model=model)
        if not path.exists():
            continue
        predictions = folder.read_tsv(path)
        y_true = _is_positive(predictions["y_true"], positive)
        y_pred = _is_positive(predictions["y_pred"], positive)
        matrix = np.array(
            [
                [np.sum(~y_true & ~y_pred), np.sum(~y_true & y_pred)],
                [np.sum(y_true & ~y_pred), np.sum(y_true & y_pred)],
            ],
            dtype=float,
        )
        n_repeats = predictions["repeat"].nunique() if "repeat" in predictions else 1
        matrix /= n_repeats
        items.append(
            figure(
                confusion_chart(
                    matrix,
                    [str(negative), str(positive)],
                    f"{network} {model}: confusion matrix",
                    title=model,
                    decimals=0 if n_repeats == 1 else 1,
                ),
                "Participants" + (f", mean over {n_repeats} repeats" if n_repeats > 1 else ""),
            )
        )
    return gallery(items)


def _nulls(folder: ReportFolder, network: str, models: list[str], metrics: dict) -> str:
    items = []
    for model in models:
        path = folder.path("cls_null", network=network, model=model)
        if not path.exists():
            continue
        null = folder.read_tsv(path)
        numeric = [c for c in null.columns if pd.api.types.is_numeric_dtype(null[c])]
        column = "accuracy" if "accuracy" in null.columns else numeric[-1]
        observed = metrics.get(model, {}).get(column, {})
        observed = observed.get("value") if isinstance(observed, dict) else observed
        if observed is None:
            continue
        items.append(
            figure(
                null_chart(
                    null[column].dropna().to_numpy(),
                    float(observed),
                    f"{network} {model}: permutation null",
                    metric=column.replace("_", " "),
                ),
                f"{escape(model)}: {escape(column)} under label permutation.",
            )
        )
    return gallery(items)


def _folds(folder: ReportFolder, network: str, models: list[str]) -> str:
    parts = []
    for model in models:
        path = folder.path("cls_folds", network=network, model=model)
        if path.exists():
            parts.append(f"<h4>{escape(model)}</h4>" + table(folder.read_tsv(path)))
    return details("Per-fold results", "".join(parts)) if parts else ""


def _training(folder: ReportFolder, network: str) -> str:
    path = folder.path("cls_training", network=network)
    if not path.exists():
        return ""
    return figure(
        training_chart(folder.read_tsv(path), f"{network}: CNN training curves"),
        "CNN training: thin lines, each fold of each repeat; thick, the mean per epoch.",
    )


def _scope_notes(metrics: dict[str, dict]) -> str:
    scopes = {values.get("cv", {}).get("cv_scope") for values in metrics.values()}
    notes = []
    for scope in sorted(scopes, key=str):
        if scope in SCOPE_TEXT:
            kind, text = SCOPE_TEXT[scope]
            notes.append(note(text, kind))
        else:
            notes.append(
                note(f"Cross-validation scope: {escape(scope)} (not described).", "warning")
            )
    cv = next(iter(metrics.values())).get("cv", {})
    text = (
        f"Scheme: {escape(cv.get('scheme', 'n/a'))}, {escape(cv.get('n_splits', 'n/a'))} folds × "
        f"{escape(cv.get('n_repeats', 'n/a'))} repeats."
    )
    n_repeats = cv.get("n_repeats")
    # Outputs that record their headline take the first repeat (older ones: a vote over repeats).
    if "headline" in cv and isinstance(n_repeats, int) and n_repeats > 1:
        text += (
            f" Every metric below, its interval and its binomial and permutation p are those of "
            f"the <strong>first repeat</strong> (one out-of-fold prediction per participant; the "
            f"permutation test scores that repeat's partition); the accuracy over the "
            f"{n_repeats} repeats is shown beside it as a stability figure."
        )
    return "".join(notes) + paragraph(text)


def _network(folder: ReportFolder, network: str, models: list[str]) -> str:
    metrics, unreadable = {}, []
    for model in models:
        path = folder.path("cls_metrics", network=network, model=model)
        try:
            metrics[model] = folder.read_json_file(path)
        except Exception as error:  # one unreadable model must not hide the others
            unreadable.append(error_box(f"{network} {model}: {folder.relative(path)}", error))
    models = [model for model in models if model in metrics]
    if not models:
        return "".join(unreadable)
    return "".join(
        [
            *unreadable,
            guarded(f"{network}: scope", lambda: _scope_notes(metrics)),
            guarded(f"{network}: metrics", lambda: _metrics_table(metrics)),
            gallery(
                [
                    guarded(f"{network}: ROC", lambda: _roc(folder, network, models, metrics)),
                    guarded(f"{network}: training", lambda: _training(folder, network)),
                ]
            ),
            guarded(f"{network}: confusion", lambda: _confusions(folder, network, models)),
            guarded(f"{network}: null", lambda: _nulls(folder, network, models, metrics)),
            guarded(f"{network}: folds", lambda: _folds(folder, network, models)),
        ]
    )


def classification_section(folder: ReportFolder) -> str:
    """Per network: metrics of each model with intervals and p, ROC, confusion, folds, training."""
    found = folder.find("cls_metrics")
    if not found:
        raise folder.not_run("classify", "classification results")
    by_network: dict[str, list[str]] = {}
    for match in found:
        by_network.setdefault(match["network"], []).append(match["model"])
    parts = []
    for network, models in by_network.items():
        models = sorted(models, key=_model_key)
        parts.append(f"<h3>{escape(network)}</h3>")
        parts.append(guarded(network, lambda n=network, m=models: _network(folder, n, m)))
    return "".join(parts)
