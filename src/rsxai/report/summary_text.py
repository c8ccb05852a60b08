"""A few lines of plain text with a run's main results, read from ``summary.json``.

Printed at the end of ``rsxai demo`` (and usable after any run): the networks
found, the significant clusters, the accuracies with their p-values and the
explanations' agreement with the statistics. Like :mod:`rsxai.report`, it
only reads the output folder.
"""

from __future__ import annotations

from pathlib import Path

from rsxai.outputs import output_path, read_json


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def text_summary(out_dir: str | Path) -> str:
    """The main results of the run in ``out_dir``, one finding per line.

    Parameters
    ----------
    out_dir : str or Path
        An output folder of ``rsxai run`` (its ``summary.json`` is read).

    Returns
    -------
    str
        Lines for the stages that ran; empty when there is no summary.
    """
    path = output_path(out_dir, "summary")
    if not path.exists():
        return ""
    summary = read_json(path)
    lines = []
    for name, entry in summary.get("networks", {}).items():
        lines.append(
            f"Network {name}: component {entry['component']} (template r = {entry['r']:.2f})"
        )
    for network, contrasts in summary.get("stats", {}).get("networks", {}).items():
        for contrast, entry in contrasts.items():
            lines.append(
                f"Stats {network} {contrast}: {entry.get('n_fwe_significant_voxels', 0)} "
                f"FWE-significant voxels, {entry.get('n_clusters', 0)} clusters, "
                f"min FWE p {_p(entry.get('min_p_fwe'))}"
            )
    classification = summary.get("classification", {})
    if classification:
        cv = classification["cv"]
        scope = cv["cv_scope"] + (" (transductive)" if cv.get("transductive") else "")
        if "transductive" in cv and cv["transductive"] is None:  # external maps: unknown
            scope += " (possibly transductive)"
        line = f"Classification: {cv['n_splits']}-fold {cv['scheme']}, scope {scope}"
        if "headline" in cv and cv.get("n_repeats", 1) > 1:
            line += f"; metrics and p of the first of {cv['n_repeats']} repeats"
        lines.append(line)
        for network, models in classification.get("networks", {}).items():
            for model, entry in models.items():
                accuracy = entry["accuracy"]
                lines.append(
                    f"  {network} {model}: accuracy {accuracy['value']:.1%} "
                    f"[{accuracy['ci_low']:.1%}, {accuracy['ci_high']:.1%}], "
                    f"binomial p {_p(entry.get('binomial_p_value'))}, "
                    f"permutation p {_p(entry.get('permutation_p_value'))}"
                )
    for network, entry in summary.get("explanations", {}).get("networks", {}).items():
        for label, method in entry.get("methods", {}).items():
            checks = method.get("sanity", {}).values()
            verdicts = sorted({check.get("verdict") for check in checks if check.get("verdict")})
            for target, result in method.get("targets", {}).items():
                agreement = result.get("agreement") or {}
                localisation = result.get("localisation") or {}
                parts = [f"Explanation {network} {label} ({target}):"]
                if "spearman" in agreement:
                    parts.append(f"Spearman r with |t| {agreement['spearman']:.2f},")
                    if agreement.get("spearman_region") is not None:
                        parts.append(f"{agreement['spearman_region']:.2f} inside the network,")
                    dice = agreement.get("dice")
                    parts.append(f"Dice {'n/a' if dice is None else f'{dice:.2f}'},")
                if localisation.get("mass_ratio") is not None:
                    parts.append(
                        f"relevance in planted effect {localisation['mass_ratio']:.1f}x its share,"
                    )
                parts.append(f"sanity {'/'.join(v for v in verdicts if v) or 'n/a'}")
                lines.append(" ".join(parts))
    return "\n".join(lines)
