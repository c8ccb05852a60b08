"""The methods text of the learning stages: classification and explanations.

Apart from :mod:`rsxai.report.methods` (the group-level stages and the section
itself) because these paragraphs follow the classify and explain outputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rsxai.report.explanations import group_relevance_maps
from rsxai.report.html import escape, format_number, paragraph
from rsxai.report.references import METHOD_REFERENCES, Citations

if TYPE_CHECKING:
    from rsxai.report.folder import ReportFolder


def generic_options(folder: ReportFolder, section: str) -> str:
    options = folder.config.get(section, {})
    return "; ".join(f"{escape(k)} = {escape(v)}" for k, v in options.items())


def classification_methods(folder: ReportFolder, cite: Citations) -> str:
    found = folder.find("cls_metrics")
    if not found:
        return ""
    metrics = folder.read_json_file(found[0]["path"])
    cv = metrics.get("cv", {})
    models = sorted({match["model"] for match in found})
    scope = cv.get("cv_scope")
    scope_text = {
        "fold": "group ICA, network labelling and dual regression were refitted on each "
        "training fold, so test participants never shaped the group maps; the common brain "
        "mask, and with it the CNN's crop box, was built from every participant's brain mask, "
        "test participants included (no labels), and training participants were "
        "dual-regressed onto group maps they had shaped while test participants were not, a "
        "pessimistic shift",
        "cohort": "group ICA and network labelling used every participant, test participants "
        "included (transductive): accuracy may be optimistic; unlike the fold scope, where "
        "only training participants are projected on group maps they shaped (a pessimistic "
        "shift), every participant was, so a difference from fold-scope accuracy mixes this "
        "optimism with that shift",
        "external maps": "the group maps were made outside rsxai and used as given in every "
        "fold, so whether they saw the test participants is unknown (possibly transductive)",
    }.get(scope, f"cv_scope = {escape(scope)}")
    permuted = {}
    for match in found:  # the permutation test runs for some models only (the baselines)
        entry = folder.read_json_file(match["path"]).get("permutation") or {}
        if entry.get("n_permutations"):
            permuted[match["model"]] = entry["n_permutations"]
    n_permutations = max(permuted.values(), default=None)
    # Models may have their own counts (the screened baseline refits every fold).
    by_count: dict[int, list[str]] = {}
    for model in sorted(permuted):
        by_count.setdefault(permuted[model], []).append(model)
    permuted_text = "; ".join(
        f"{escape(', '.join(names))} ({format_number(count)} permutations)"
        for count, names in sorted(by_count.items(), reverse=True)
    )
    text = (
        f"Each network's subject maps were classified by {escape(', '.join(models))} under "
        f"{escape(cv.get('scheme', 'cross-validation'))} ({cv.get('n_splits')} folds × "
        f"{cv.get('n_repeats')} repeats){cite('varoquaux2017')}; {scope_text}. "
        + (
            "Reported metrics, intervals and p-values are those of the first repeat, whose "
            f"partition the permutation test keeps; the mean ± SD over the {cv['n_repeats']} "
            "repeats is given as a stability figure. "
            if "headline" in cv and isinstance(cv.get("n_repeats"), int) and cv["n_repeats"] > 1
            else ""
        )
        + (
            f"Significance: label permutation test of the whole cross-validation for "
            f"{permuted_text}{cite('ojala2010')}, and a binomial test against chance for every "
            "model. "
            if n_permutations
            else "Significance: a binomial test against chance (no permutation test). "
        )
        + (
            "The screened baseline smoothed each map within the brain mask, ranked the voxels "
            "by a two-sample t-test on each fold's training participants only, averaged the "
            "voxels of largest and of smallest t into two features and fitted an L2 logistic "
            "regression on them. "
            if "screened" in models
            else ""
        )
        + f"Models used PyTorch{cite('paszke2019')} and scikit-learn{cite('pedregosa2011')}."
    )
    settings = generic_options(folder, "classify")
    if settings:
        text += f" Settings: {settings}."
    return paragraph(text)


def explanation_methods(folder: ReportFolder, cite: Citations) -> str:
    found = group_relevance_maps(folder)
    if not found:
        return ""
    methods = sorted({match["method"] for match in found})
    named = []
    for method in methods:
        key = METHOD_REFERENCES.get(method.lower().replace("-", "").replace("_", ""))
        named.append(escape(method) + (cite(key) if key else ""))
    text = (
        f"Attributions were computed with Captum{cite('kokhlikyan2020')} for every held-out "
        f"participant by {', '.join(named)}, averaged into group maps and compared with the "
        "voxel-wise statistics (Spearman correlation, Dice overlap of the suprathreshold "
        f"voxels). Sanity checks randomised the model's weights{cite('adebayo2018')}; "
        f"faithfulness was measured by deletion and insertion curves{cite('petsiuk2018')}"
    )
    if folder.find("xai_localisation"):
        text += f" and, on simulated data, localisation by the pointing game{cite('zhang2018')}"
    settings = generic_options(folder, "explain")
    text += "." + (f" Settings: {settings}." if settings else "")
    return paragraph(text)
