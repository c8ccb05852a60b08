"""Explanations of one network's cross-validated CNN, written to the output folder.

:func:`explain_network` reads the classify stage's outputs for one network
(held-out maps, predictions, fold weights of the first repeat;
:func:`rsxai.stages.explain_inputs.load_heldout`) and writes under
``explanations/network-<name>/``: every held-out subject's raw map per method
and target (4D NIfTI, subjects as in ``desc-subjects_order.tsv``); group maps
(``meancorrect``, ``meanall``, ``tstat``; :mod:`rsxai.explain.group_comparison`) with
their top regions; their agreement with the group statistics; the
randomisation sanity checks and deletion / insertion curves
(:mod:`rsxai.explain.fold_checks`); on simulated data, the localisation of the
planted effect. It returns the network's summary entry; the whole folder is
done by :mod:`rsxai.stages.explain`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from rsxai.exceptions import InputError
from rsxai.explain import (
    GROUP_MAP_NAMES,
    METHOD_LABELS,
    AttributionSettings,
    explain_subjects,
    first_fold_checks,
    group_results,
    heldout_predictions,
    sampled_faithfulness,
)
from rsxai.grid import Grid
from rsxai.outputs import output_path, write_nifti, write_tsv
from rsxai.stages.estimators import cnn_estimator
from rsxai.stages.explain_inputs import load_heldout, statistics_maps

if TYPE_CHECKING:
    from rsxai.config import Config

logger = logging.getLogger(__name__)

#: The patient class of the classify stage's labels (``Cohort.y``: 1 for the positive group).
PATIENT = 1


def explain_network(
    out_dir: Path,
    network: str,
    grid: Grid,
    config: Config,
    summary: dict,
    effect_region: np.ndarray | None,
) -> tuple[dict, list[Path], dict[str, float]]:
    """Explain one network's held-out subjects; write its outputs; return its summary entry.

    Parameters
    ----------
    out_dir : Path
        The output folder of ``rsxai run`` (classify stage done).
    network : str
        The network whose cross-validated CNN is explained.
    grid : Grid
        The folder's brain mask grid (``mask.nii.gz``).
    config : Config
        The resolved configuration: its ``explain`` options, ``run.random_seed``,
        ``run.device`` and the CNN settings of ``classify`` (threads) are used.
    summary : dict
        The folder's ``summary.json`` contents (for the group statistics).
    effect_region : ndarray of shape (n_voxels,), optional
        Bool mask of the network's planted effect on simulated data; None elsewhere.

    Returns
    -------
    entry : dict
        The network's entry under ``explanations`` in ``summary.json``.
    written : list of Path
        Every file written under ``explanations/network-<network>/``.
    seconds : dict of str to float
        Wall-clock seconds of each part (``attribution``, ``group_maps``,
        ``sanity_checks``, ``faithfulness``), rounded to 0.1 s: for
        ``provenance.json``, never for ``summary.json``.
    """
    options, seed = config.explain, config.run.random_seed
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    data = load_heldout(out_dir, network, grid, device=config.run.device)
    # The CNN as the classify stage builds it: its settings (threads, training) apply here.
    estimator = cnn_estimator(config, grid.mask) if "cnn" in config.classify.models else None
    for model in data.fold_models.values():
        model.set_params(n_threads=estimator.n_threads if estimator is not None else None)
    settings = AttributionSettings(
        smoothgrad_samples=options.smoothgrad_samples,
        smoothgrad_noise=options.smoothgrad_noise,
        ig_steps=options.ig_steps,
        target_layer=options.target_layer,
    )
    first_model = data.fold_models[min(data.fold_models)]
    layers = dict(first_model.model_.named_modules())
    if options.target_layer is not None and options.target_layer not in layers:
        candidates = getattr(first_model.model_, "explanation_layers", None) or list(layers)[1:]
        raise InputError(
            f"--target-layer {options.target_layer!r} is not a layer of the {network} CNN; "
            f"choose one of {', '.join(candidates)} (or leave it unset)."
        )
    predicted, probabilities = heldout_predictions(data.fold_models, data.maps, data.fold_of)
    probability = probabilities[:, first_model.classes_.tolist().index(PATIENT)]
    correct = predicted == data.y_true
    relevance = explain_subjects(
        data.fold_models,
        data.maps,
        data.fold_of,
        methods=options.methods,
        targets=options.targets,
        positive_label=PATIENT,
        settings=settings,
        seed=seed,
    )
    seconds["attribution"] = time.perf_counter() - clock
    logger.info(
        "explain: %s: %d subjects, %d methods x %d targets in %.1f s",
        network,
        len(data.maps),
        len(options.methods),
        len(options.targets),
        seconds["attribution"],
    )

    written = [
        write_tsv(
            output_path(out_dir, "xai_subjects_order", network=network),
            pd.DataFrame(
                {
                    "participant_id": data.participant_id,
                    "group": data.group,
                    "fold": data.fold_of,
                    "y_true": data.y_true,
                    "y_pred": predicted,
                    "probability": probability,
                    "correct": correct.astype(int),
                }
            ),
        )
    ]
    statistics = statistics_maps(out_dir, summary, network, grid)
    # Which FWE-significant voxels the Dice is against, on every agreement record.
    correction = {} if statistics is None else {"fwe_correction": statistics["correction"]}
    tables: dict[str, list] = {"agreement": [], "localisation": []}
    methods_entry: dict[str, dict] = {}
    clock = time.perf_counter()
    for method in options.methods:
        label = METHOD_LABELS[method]
        methods_entry[label] = {"method": method, "sanity": {}, "targets": {}}
        for target in options.targets:
            maps = relevance[method][target]
            key = {"method": label, "target": target}
            fields = {"network": network, **key}
            results = group_results(
                maps,
                correct,
                grid,
                abs_t=None if statistics is None else statistics["abs_t"],
                significant=None if statistics is None else statistics["significant"],
                effect_region=effect_region,
                network_region=None if statistics is None else statistics["network_region"],
                top_fraction=options.top_fraction,
            )
            group = results["group"]
            outputs = {
                "subjects": output_path(out_dir, "xai_subjects", **fields),
                "regions": output_path(out_dir, "xai_regions", **fields),
            }
            write_nifti(outputs["subjects"], grid.to_img(maps))
            write_tsv(outputs["regions"], results["regions"])
            for desc in GROUP_MAP_NAMES:
                if np.isfinite(group[desc]).any():
                    outputs[desc] = output_path(out_dir, "xai_group", desc=desc, **fields)
                    write_nifti(outputs[desc], grid.to_img(np.nan_to_num(group[desc], nan=0.0)))
            written += outputs.values()
            tables["agreement"] += [key | row | correction for row in results["agreement"]]
            tables["localisation"] += [key | row for row in results["localisation"]]
            methods_entry[label]["targets"][target] = {
                "n_correct": group["n_correct"],
                "n_empty": group["n_empty"],
                "outputs": {k: str(path.relative_to(out_dir)) for k, path in outputs.items()},
                "agreement": (
                    results["agreement"][0] | correction if results["agreement"] else None
                ),
                "localisation": results["localisation_summary"],
                "faithfulness": None,
            }
    seconds["group_maps"] = time.perf_counter() - clock

    for name, rows in tables.items():
        if rows:
            written.append(
                write_tsv(output_path(out_dir, f"xai_{name}", network=network), pd.DataFrame(rows))
            )

    checked: dict[str, dict | None] = {"sanity_checks": None, "faithfulness": None}
    if options.sanity_checks:
        clock = time.perf_counter()
        trained = None
        if "patient" in options.targets:
            trained = {m: relevance[m]["patient"] for m in options.methods}
        sanity, checked["sanity_checks"] = first_fold_checks(
            data.fold_models,
            data.maps,
            data.fold_of,
            data.y_true,
            options.methods,
            trained_maps=trained,
            label=PATIENT,
            n_subjects=options.n_sanity_subjects,
            settings=settings,
            seed=seed,
            estimator=estimator,
        )
        checked["sanity_checks"]["subjects"] = [
            data.participant_id[i] for i in checked["sanity_checks"]["subjects"]
        ]
        sanity["method"] = sanity["method"].map(METHOD_LABELS)
        written.append(write_tsv(output_path(out_dir, "xai_sanity", network=network), sanity))
        for row in sanity[sanity["verdict"] != ""].itertuples():
            methods_entry[row.method]["sanity"][row.check] = {
                "verdict": row.verdict,
                "spearman": row.spearman,
                "ssim": row.ssim,
            }
        seconds["sanity_checks"] = time.perf_counter() - clock
        logger.info("explain: %s: sanity checks in %.1f s", network, seconds["sanity_checks"])

    if options.n_faithfulness_subjects > 0:
        clock = time.perf_counter()
        target = "predicted" if "predicted" in options.targets else options.targets[0]
        curves, checked["faithfulness"] = sampled_faithfulness(
            data.fold_models,
            data.maps,
            data.fold_of,
            {METHOD_LABELS[m]: relevance[m][target] for m in options.methods},
            predicted if target == "predicted" else np.full(len(predicted), PATIENT),
            target=target,
            n_subjects=options.n_faithfulness_subjects,
            steps=options.faithfulness_steps,
            seed=seed,
        )
        checked["faithfulness"]["subjects"] = [
            data.participant_id[i] for i in checked["faithfulness"]["subjects"]
        ]
        written.append(
            write_tsv(output_path(out_dir, "xai_faithfulness", network=network), curves)
        )
        areas = curves.drop_duplicates(["method", "target", "curve"])
        for row in areas[areas["method"] != "random"].itertuples():
            entry = methods_entry[row.method]["targets"][row.target]
            entry["faithfulness"] = (entry["faithfulness"] or {}) | {
                f"{row.curve}_auc": row.auc,
                f"{row.curve}_auc_random": row.auc_random,
                "n_subjects": row.n_subjects,
            }
        seconds["faithfulness"] = time.perf_counter() - clock
        logger.info("explain: %s: faithfulness in %.1f s", network, seconds["faithfulness"])

    flagged = sorted(
        label
        for label, method_entry in methods_entry.items()
        if any(check["verdict"] == "fail" for check in method_entry["sanity"].values())
    )
    if flagged:
        # A finding about the methods, not a fault of the run: INFO, flagged in the report.
        logger.info(
            "explain: %s: %s failed a randomisation sanity check: their maps barely change when "
            "what the model learned is destroyed; they do not explain the model.",
            network,
            ", ".join(flagged),
        )
    entry = {
        "n_subjects": len(data.maps),
        "n_correct": int(correct.sum()),
        "n_folds": len(data.fold_models),
        "target_layer": options.target_layer or first_model.target_layer_,
        "statistics": None
        if statistics is None
        else {
            "t_map": statistics["t_map"],
            "contrasts": statistics["contrasts"],
            "inference": statistics["inference"],
            "correction": statistics["correction"],
            "n_significant": int(statistics["significant"].sum()),
        },
        "effect_region": None
        if effect_region is None
        else {
            "n_voxels": int(effect_region.sum()),
            "share": float(effect_region.mean()),
        },
        "methods": methods_entry,
        "flagged_methods": flagged,
        **checked,
        "tables": {
            name: str(output_path(out_dir, f"xai_{name}", network=network).relative_to(out_dir))
            for name in ("subjects_order", "agreement", "localisation", "sanity", "faithfulness")
            if output_path(out_dir, f"xai_{name}", network=network).exists()
        },
    }
    return entry, written, {k: round(v, 1) for k, v in seconds.items()}
