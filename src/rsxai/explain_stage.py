"""The explain stage of ``rsxai run`` (and ``rsxai explain``): maps, group maps and their checks.

For each network with a cross-validated CNN, reads the classify stage's
outputs (held-out maps, predictions, fold weights of the first repeat) and
writes, under ``explanations/network-<name>/``:

- every held-out subject's raw attribution map per method and target (4D NIfTI,
  subjects in the order of ``desc-subjects_order.tsv``);
- group maps per method and target: the mean normalised relevance over the
  correctly classified subjects (``meancorrect``) and over all (``meanall``),
  and the voxelwise one-sample t of relevance (``tstat``,
  :func:`rsxai.explanation_metrics.group_maps`), with a table of top regions;
- the agreement of each group map with the group statistics (Spearman with
  |t|, Dice of the top voxels with the FWE-significant ones);
- the randomisation sanity checks, deletion and insertion curves and, on
  simulated data, localisation of the planted effect.

Everything is recorded in ``summary.json`` under ``explanations``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from rsxai.exceptions import InputError
from rsxai.explain import METHOD_LABELS, AttributionSettings, explain_subjects
from rsxai.explain_checks import faithfulness_curves, randomisation_checks
from rsxai.explain_inputs import (
    EXPLAINED_REPEAT,
    HeldOutData,
    effect_regions,
    explained_networks,
    find_ground_truth,
    load_heldout,
    statistics_maps,
)
from rsxai.explanation_metrics import agreement, group_maps, localisation
from rsxai.grid import Grid
from rsxai.outputs import Summary, output_path, write_nifti, write_tsv

if TYPE_CHECKING:
    from rsxai.config import Config
    from rsxai.pipeline import RunContext

logger = logging.getLogger("rsxai")

#: Group maps compared with the statistics and the planted effects.
COMPARED_MAPS = ("meancorrect", "meanall")
#: The pointing game counts a peak within this many voxels of the region (Zhang
#: et al. 2018 allow 15 pixels in 2D images).
POINTING_TOLERANCE = 1.0
#: Rows of each top-regions table.
N_TOP_REGIONS = 10
NORMALISATION = (
    "group maps: each subject's |relevance| divided by its sum over the brain mask (each "
    "voxel holds its share of the subject's relevance), then averaged (meancorrect, meanall) "
    "or tested voxelwise against the even share 1/n_voxels (tstat; 0 where undefined); "
    "subject maps are raw"
)


def run_explain(context: RunContext) -> list[Path]:
    """The explain stage of :func:`rsxai.pipeline.run`."""
    return explain_output_folder(
        context.out_dir,
        config=context.config,
        summary=context.summary,
        input_paths=[context.cohort.source] if context.cohort.source else (),
    )


def explain_output_folder(
    out_dir: str | Path,
    *,
    config: Config | None = None,
    summary: Summary | None = None,
    ground_truth: str | Path | None = None,
    input_paths=(),
) -> list[Path]:
    """Explain every network's CNN in an output folder of ``rsxai run`` (classify stage done).

    Parameters
    ----------
    out_dir : str or Path
        The output folder.
    config : Config, optional
        None: the folder's ``rsxai.toml`` (options it lacks take their defaults).
    summary : Summary, optional
        None: the folder's ``summary.json``.
    ground_truth : str or Path, optional
        A simulator's ``ground_truth`` folder; None: looked for beside the
        run's input (:func:`rsxai.explain_inputs.find_ground_truth`).
    input_paths : sequence of path, optional
        More places to look for the ground truth (the cohort's source).

    Returns
    -------
    list of Path
        Every file written.
    """
    from rsxai.atlas import atlas_data_dir

    started = time.perf_counter()
    out_dir = Path(out_dir)
    config = config if config is not None else _folder_config(out_dir)
    summary = summary if summary is not None else Summary(out_dir)
    options = config.explain
    if not 0 < options.top_fraction <= 1:
        raise InputError(
            "--top-fraction must be in (0, 1] (a share of the voxels); "
            f"got {options.top_fraction}."
        )
    mask_path = output_path(out_dir, "mask")
    networks = explained_networks(out_dir, summary.data) if mask_path.exists() else []
    if not networks:
        raise InputError(
            f"{out_dir}: no CNN results to explain (classification/network-*/"
            "desc-heldout_maps.nii.gz and model-cnn_predictions.tsv). Run `rsxai run` with the "
            "cnn model (--models cnn ...) up to the classify stage first."
        )
    atlas_data_dir()  # fail now, not after the attributions, when the atlases are missing
    grid = Grid.from_img(mask_path)
    truth_dir = Path(ground_truth) if ground_truth else find_ground_truth(out_dir, input_paths)
    regions = effect_regions(truth_dir, grid) if truth_dir else {}
    written: list[Path] = []
    entry = {
        "methods": [METHOD_LABELS[m] for m in options.methods],
        "method_names": {METHOD_LABELS[m]: m for m in options.methods},
        "targets": list(options.targets),
        "repeat": EXPLAINED_REPEAT,
        "normalisation": NORMALISATION,
        "options": dict(options),
        "ground_truth": str(truth_dir) if truth_dir else None,
        "networks": {},
        "flagged_methods": {},
    }
    for network in networks:
        network_entry, files = explain_network(
            out_dir, network, grid, config, summary.data, regions.get(network)
        )
        entry["networks"][network] = network_entry
        entry["flagged_methods"][network] = network_entry["flagged_methods"]
        written += files
    entry["seconds"] = round(time.perf_counter() - started, 1)
    summary.update("explanations", entry)
    return written


def explain_network(
    out_dir: Path,
    network: str,
    grid: Grid,
    config: Config,
    summary: dict,
    effect_region: np.ndarray | None,
) -> tuple[dict, list[Path]]:
    """Explain one network's held-out subjects; write its outputs; return its summary entry."""
    options, seed = config.explain, config.run.random_seed
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    data = load_heldout(out_dir, network, grid, device=config.run.device)
    settings = AttributionSettings(
        smoothgrad_samples=options.smoothgrad_samples,
        smoothgrad_noise=options.smoothgrad_noise,
        ig_steps=options.ig_steps,
        target_layer=options.target_layer,
    )
    first_model = data.fold_models[min(data.fold_models)]
    predicted = np.empty(len(data.maps), dtype=int)
    probability = np.empty(len(data.maps))
    for fold, model in data.fold_models.items():
        rows = data.fold_of == fold
        proba = model.predict_proba(data.maps[rows])
        predicted[rows] = model.classes_[proba.argmax(axis=1)]
        probability[rows] = proba[:, list(model.classes_).index(1)]
    correct = predicted == data.y_true
    relevance = explain_subjects(
        data.fold_models,
        data.maps,
        data.fold_of,
        methods=options.methods,
        targets=options.targets,
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
    tables: dict[str, list] = {"agreement": [], "localisation": []}
    methods_entry: dict[str, dict] = {}
    clock = time.perf_counter()
    for method in options.methods:
        label = METHOD_LABELS[method]
        methods_entry[label] = {"method": method, "sanity": {}, "targets": {}}
        for target in options.targets:
            maps = relevance[method][target]
            fields = {"network": network, "method": label, "target": target}
            outputs = {
                "subjects": write_nifti(
                    output_path(out_dir, "xai_subjects", **fields), grid.to_img(maps)
                )
            }
            group = group_maps(maps, correct)
            for desc in ("meancorrect", "meanall", "tstat"):
                if np.isfinite(group[desc]).any():
                    image = grid.to_img(np.nan_to_num(group[desc], nan=0.0))
                    outputs[desc] = write_nifti(
                        output_path(out_dir, "xai_group", desc=desc, **fields), image
                    )
            shown = "meancorrect" if group["n_correct"] else "meanall"
            outputs["regions"] = write_tsv(
                output_path(out_dir, "xai_regions", **fields), _regions(group[shown], grid, shown)
            )
            written += outputs.values()
            target_entry = {
                "n_correct": group["n_correct"],
                "n_empty": group["n_empty"],
                "outputs": {k: str(p.relative_to(out_dir)) for k, p in outputs.items()},
                "agreement": None,
                "localisation": None,
                "faithfulness": None,
            }
            key = {"method": label, "target": target}
            for desc in COMPARED_MAPS if statistics is not None else ():
                result = agreement(
                    group[desc],
                    statistics["abs_t"],
                    statistics["significant"],
                    top_fraction=options.top_fraction,
                )
                result["spearman"] = result.pop("spearman_r")
                tables["agreement"].append(key | {"map": desc} | result)
                if desc == COMPARED_MAPS[0]:
                    target_entry["agreement"] = tables["agreement"][-1]
            if effect_region is not None:
                located = _localisation_rows(maps, group, effect_region, grid, key)
                tables["localisation"] += located
                target_entry["localisation"] = _localisation_summary(located)
            methods_entry[label]["targets"][target] = target_entry
    seconds["group_maps"] = time.perf_counter() - clock

    for name, rows in tables.items():
        if rows:
            written.append(
                write_tsv(output_path(out_dir, f"xai_{name}", network=network), pd.DataFrame(rows))
            )

    if options.sanity_checks:
        clock = time.perf_counter()
        sanity = _sanity(data, relevance, config, grid, settings)
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
        curves = _faithfulness(data, relevance, predicted, options, seed)
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
        logger.warning(
            "explain: %s: %s failed a randomisation sanity check: their maps barely change when "
            "what the model learned is destroyed; do not read them as explanations of the model.",
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
        "tables": {
            name: str(output_path(out_dir, f"xai_{name}", network=network).relative_to(out_dir))
            for name in ("subjects_order", "agreement", "localisation", "sanity", "faithfulness")
            if output_path(out_dir, f"xai_{name}", network=network).exists()
        },
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }
    return entry, written


def _folder_config(out_dir: Path) -> Config:
    from rsxai.config import load_config_file, resolve_config

    path = output_path(out_dir, "config")
    return resolve_config(load_config_file(path) if path.exists() else None)


def _regions(values: np.ndarray, grid: Grid, desc: str) -> pd.DataFrame:
    """Top atlas regions of a group map, in units of the even share (1 = uniform relevance)."""
    from rsxai.clusters import top_regions

    if not np.isfinite(values).all():
        return pd.DataFrame(columns=["rank", "region", "n_voxels"])
    table = top_regions(values * grid.n_voxels, grid, n=N_TOP_REGIONS)
    table = table.rename(columns={"mean": "mean_relative", "max": "max_relative"})
    table["relevance_share"] = table.pop("sum") / grid.n_voxels
    table["volume_share"] = table["n_voxels"] / grid.n_voxels
    table["map"] = desc
    return table


def _localisation_rows(
    maps: np.ndarray, group: dict, region: np.ndarray, grid: Grid, row: dict
) -> list[dict]:
    """Relevance mass and pointing game: per subject (means) and of the group maps."""
    ijk = np.argwhere(grid.mask)
    rows = []
    levels = [("subjects", maps)] + [
        (f"group {desc}", group[desc][None])
        for desc in COMPARED_MAPS
        if np.isfinite(group[desc]).all()
    ]
    for level, values in levels:
        result = localisation(values, region, voxel_ijk=ijk, tolerance=POINTING_TOLERANCE)
        rows.append(
            {
                "method": row["method"],
                "target": row["target"],
                "level": level,
                "mass_inside": result["mean_mass_inside"],
                "region_share": result["region_share"],
                "mass_ratio": result["mean_mass_ratio"],
                "pointing_game": result["pointing_hit_rate"],
                "pointing_chance": result["pointing_chance"],
                "n_maps": result["n_maps"] - result["n_empty"],
            }
        )
    return rows


def _localisation_summary(rows: list[dict]) -> dict:
    """Group mass ratio (meanall map) and per-subject pointing game of one method and target."""
    levels = {row["level"]: row for row in rows}
    subjects, group = levels["subjects"], levels.get("group meanall", {})
    return {
        "mass_ratio": group.get("mass_ratio"),
        "mass_ratio_subjects": subjects["mass_ratio"],
        "pointing_game": subjects["pointing_game"],
        "pointing_game_group": group.get("pointing_game"),
        "pointing_chance": subjects["pointing_chance"],
        "region_share": subjects["region_share"],
    }


def _sanity(
    data: HeldOutData, relevance: dict, config: Config, grid: Grid, settings
) -> pd.DataFrame:
    """Both randomisation checks on the first fold's model and held-out subjects."""
    from rsxai.classify_stage import build_models

    options, seed = config.explain, config.run.random_seed
    fold = min(data.fold_models)
    subjects = np.flatnonzero(data.fold_of == fold)[: options.n_sanity_subjects]
    model = data.fold_models[fold]
    if "patient" in options.targets:
        trained = {m: relevance[m]["patient"][subjects] for m in options.methods}
    else:
        trained = {
            m: maps["patient"]
            for m, maps in explain_subjects(
                {fold: model},
                data.maps[subjects],
                data.fold_of[subjects],
                methods=options.methods,
                targets=("patient",),
                settings=settings,
                seed=seed,
            ).items()
        }
    # build_models reads the configuration and the labels (for the baselines' inner
    # folds) only: a namespace with both stands for the run context.
    context = SimpleNamespace(config=config, cohort=SimpleNamespace(y=data.y_true))
    estimator = build_models(context, grid.mask).get("cnn")
    training = data.fold_of != fold
    return randomisation_checks(
        model,
        data.maps[subjects],
        trained,
        label=1,
        subjects=subjects,
        settings=settings,
        seed=seed,
        estimator=estimator,
        train_maps=data.maps[training] if estimator is not None else None,
        train_labels=data.y_true[training] if estimator is not None else None,
    )


def _faithfulness(data: HeldOutData, relevance: dict, predicted, options, seed) -> pd.DataFrame:
    """Deletion and insertion curves for the predicted class on a seeded subset of subjects."""
    n = len(data.maps)
    chosen = np.sort(
        np.random.default_rng([int(seed), 2]).choice(
            n, min(options.n_faithfulness_subjects, n), replace=False
        )
    )
    target = "predicted" if "predicted" in options.targets else options.targets[0]
    labels = predicted[chosen] if target == "predicted" else np.ones(len(chosen), dtype=int)
    return faithfulness_curves(
        data.fold_models,
        data.maps[chosen],
        data.fold_of[chosen],
        {METHOD_LABELS[m]: {target: relevance[m][target][chosen]} for m in options.methods},
        {target: labels},
        steps=options.faithfulness_steps,
        seed=seed,
    )
