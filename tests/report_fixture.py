"""A FABRICATED rsxai output folder and HTML helpers for the report tests.

``from report_fixture import make_fabricated_output, ...`` (as
``fmriprep_fixture``). :func:`make_fabricated_output` writes hand-made files in
the documented layout of every stage, classification and explanations
included, with chosen values, so that tests know what the report must show.
These values are test fixtures, not results.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w

from rsxai.grid import Grid
from rsxai.outputs import output_path, write_json, write_nifti, write_text, write_tsv

VOXEL_MM = 8.0
SECTION_IDS = (
    "methods",
    "sample",
    "group-ica",
    "dual-regression",
    "statistics",
    "classification",
    "explanations",
    "warnings",
)

FAKE_ACCURACY = {"value": 0.7321, "ci_low": 0.6102, "ci_high": 0.8333}
FAKE_LOG_WARNING = "visual: fabricated warning for the report test"


def _blob(grid: Grid, centre_mm, radius_mm: float) -> np.ndarray:
    distance = np.linalg.norm(grid.world_coordinates() - np.asarray(centre_mm), axis=1)
    return np.exp(-0.5 * (distance / radius_mm) ** 2)


def _zscore(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / values.std()


def make_fabricated_output(out: Path) -> Path:
    """Write a FABRICATED output folder with every registered output the report reads.

    The values are chosen by hand (seeded noise plus blobs at stated places) so
    that tests know what the report must show; they are not results.
    """
    rng = np.random.default_rng(7)
    grid = Grid.mni(VOXEL_MM)
    labels = [f"{i:02d}" for i in range(1, 13)]
    groups = ["HC"] * 6 + ["ALS"] * 6
    ages = [61, 58, 64, 55, 60, 59, 66, 71, 63, 69, 65, 70]
    sexes = ["F", "M", "F", "F", "M", "F", "M", "M", "F", "M", "M", "F"]
    write_tsv(
        output_path(out, "participants"),
        pd.DataFrame(
            {
                "participant_id": [f"sub-{x}" for x in labels],
                "group": groups,
                "age": ages,
                "sex": sexes,
            }
        ),
    )
    config = {
        "input": {"task": "rest", "space": "MNI152NLin2009cAsym", "group_column": "group"},
        "preprocess": {
            "voxel_size": VOXEL_MM,
            "motion": "24",
            "wm_csf": True,
            "global_signal": False,
            "high_pass": 0.01,
            "low_pass": 0.1,
            "detrend_order": 1,
            "smoothing_fwhm": 0.0,
            "mask_fraction": 1.0,
        },
        "ica": {"n_components": 4, "n_restarts": 5},
        "networks": {"networks": ["sensorimotor", "visual"], "force_component": [], "min_r": 0.15},
        "dual_regression": {"des_norm": True},
        "stats": {
            "n_permutations": 100,
            "contrasts": ["patients>controls"],
            "tfce": True,
            "covariates": [],
        },
        "run": {"random_seed": 0, "n_jobs": 1, "stop_after": "report"},
    }
    write_text(output_path(out, "config"), tomli_w.dumps(config))
    write_json(
        output_path(out, "provenance"),
        {
            "rsxai_version": "0.1.0",
            "command": ["rsxai", "run", "fabricated", "out"],
            "finished": "2026-01-01T00:00:00+00:00",
            "random_seed": 0,
            "versions": {"rsxai": "0.1.0", "python": "3.11.7", "nilearn": "0.14.1"},
            "configuration": config,
            "input": "/fabricated/input",
            "stages": {s: {"status": "computed"} for s in ("preprocess", "ica", "stats")},
        },
    )
    write_text(
        output_path(out, "log"),
        "2026-01-01 00:00:00,000 INFO    Stage ica: running.\n"
        f"2026-01-01 00:00:01,000 WARNING {FAKE_LOG_WARNING}\n",
    )
    write_nifti(output_path(out, "mask"), grid.mask_img())

    # Group ICA: sensorimotor, visual, default mode, noise.
    centres = {
        "sensorimotor": [(-38, -22, 56), (38, -22, 56)],
        "visual": [(0, -84, 6)],
        "default_mode": [(0, -55, 30), (0, 50, 0)],
    }
    maps = [_zscore(sum(_blob(grid, c, 12) for c in cs)) for cs in centres.values()]
    maps.append(_zscore(rng.standard_normal(grid.n_voxels)))
    write_nifti(output_path(out, "components"), grid.to_img(np.stack(maps)))
    write_tsv(
        output_path(out, "components_table"),
        pd.DataFrame(
            {
                "component": [0, 1, 2, 3],
                "network": ["sensorimotor", "visual", "default_mode", "auditory"],
                "r": [0.41, 0.52, 0.47, 0.03],
                "second_network": ["auditory", "dorsal_attention", "frontoparietal", "visual"],
                "second_r": [0.12, 0.08, 0.1, 0.02],
                "stability": [0.991, 0.987, 0.962, 0.512],
                "explained_variance": [0.031, 0.028, 0.025, 0.004],
            }
        ),
    )
    networks = {}
    for index, name in enumerate(("sensorimotor", "visual")):
        write_nifti(output_path(out, "network_map", network=name), grid.to_img(maps[index]))
        networks[name] = {
            "component": index,
            "r": [0.41, 0.52][index],
            "template": "built-in (Seitzman et al. 2018)",
            "group_map": str(output_path(out, "network_map", network=name).relative_to(out)),
        }
    write_json(
        output_path(out, "network_selection"),
        {k: {"component": v["component"], "r": v["r"]} for k, v in networks.items()},
    )
    qc = pd.DataFrame(
        {
            "participant_id": [f"sub-{x}" for x in labels],
            "r_sensorimotor": 0.5 + 0.02 * rng.standard_normal(12),
            "r_visual": 0.45 + 0.02 * rng.standard_normal(12),
        }
    )
    qc.loc[2, "r_visual"] = 0.05  # sub-03: far below the others
    qc["outlier_sensorimotor"] = False
    qc["outlier_visual"] = qc["participant_id"] == "sub-03"
    write_tsv(output_path(out, "dr_qc"), qc)

    # Statistics: a planted visual effect, nothing in the sensorimotor network.
    stats_entries = {}
    for name, strength in (("sensorimotor", 0.0), ("visual", 6.0)):
        t = 0.8 * rng.standard_normal(grid.n_voxels) + strength * _blob(grid, (10, -88, 6), 10)
        log_p_fwe = np.where(t > 4.0, 2.0, 0.05)
        log_p_unc = np.where(t > 2.5, 3.0, 0.2)
        images = {
            "t": t,
            "tfce": np.clip(t, 0, None) ** 2,
            "logpFWEtfce": log_p_fwe,
            "logpFWEt": log_p_fwe,
            "logpUncorrected": log_p_unc,
        }
        paths = {}
        for stat, values in images.items():
            path = output_path(
                out, "stat_map", network=name, contrast="patientsGTcontrols", stat=stat
            )
            write_nifti(path, grid.to_img(values))
            paths[stat] = str(path.relative_to(out))
        peak = int(np.argmax(t))
        stats_entries[name] = {
            "patients>controls": {
                "n_permutations": 100,
                "inference": "TFCE",
                "n_fwe_significant_voxels": int(np.sum(log_p_fwe > -np.log10(0.05))),
                "min_p_fwe": float(10 ** -log_p_fwe.max()),
                "min_p_fwe_bonferroni_networks": min(1.0, 2 * float(10 ** -log_p_fwe.max())),
                "peak_mni": [float(c) for c in grid.world_coordinates()[peak]],
                "peak_t": float(t[peak]),
                "maps": paths,
            }
        }
    write_tsv(
        output_path(out, "clusters", network="visual", contrast="patientsGTcontrols"),
        pd.DataFrame(
            {
                "cluster": [1],
                "n_voxels": [
                    stats_entries["visual"]["patients>controls"]["n_fwe_significant_voxels"]
                ],
                "peak_x": [10.0],
                "peak_y": [-88.0],
                "peak_z": [6.0],
                "region": ["Intracalcarine Cortex (fabricated label)"],
            }
        ),
    )
    write_json(
        output_path(out, "summary"),
        {
            "rsxai_version": "0.1.0",
            "subjects": {
                "n": 12,
                "groups": {"HC": 6, "ALS": 6},
                "positive_label": "ALS",
                "negative_label": "HC",
                "excluded": [{"label": "13", "reason": "fabricated: too few volumes"}],
            },
            "warnings": ["fabricated input warning"],
            "networks": networks,
            "dual_regression_qc": {"outliers": ["sub-03"]},
            "stats": {
                "n_tests": 2,
                "correction": "FWE",
                "covariates": [],
                "networks": stats_entries,
            },
        },
    )

    # Classification of the visual network by a CNN and an SVM (fabricated values).
    y = np.array([0] * 6 + [1] * 6)
    for model in ("svm", "cnn"):
        rows = []
        for repeat in range(2):
            probability = np.clip(0.5 + 0.35 * (y - 0.5) + 0.2 * rng.standard_normal(12), 0, 1)
            for i, label in enumerate(labels):
                rows.append(
                    {
                        "subject": f"sub-{label}",
                        "y_true": int(y[i]),
                        "y_pred": int(probability[i] > 0.5),
                        "probability": float(probability[i]),
                        "fold": i % 3,
                        "repeat": repeat,
                    }
                )
        write_tsv(
            output_path(out, "cls_predictions", network="visual", model=model), pd.DataFrame(rows)
        )
        interval = {"value": 0.7, "ci_low": 0.5, "ci_high": 0.85, "method": "clopper-pearson"}
        metrics = {
            "accuracy": FAKE_ACCURACY if model == "cnn" else interval,
            "balanced_accuracy": interval,
            "sensitivity": interval,
            "specificity": interval,
            "roc_auc": {"value": 0.81, "ci_low": 0.66, "ci_high": 0.93, "method": "delong"},
            "cv": {
                "scheme": "repeated stratified k-fold",
                "n_splits": 3,
                "n_repeats": 2,
                "cv_scope": "cohort",
            },
        }
        if model == "cnn":  # the layout of the issue
            metrics["permutation"] = {"p_value": 0.0099, "n_permutations": 100}
            metrics["binomial"] = {"p_value": 0.0386, "chance": 0.5}
        else:  # the layout of the classify stage in progress: no permutation test here
            metrics["permutation"] = None
            metrics["binomial_p_value"] = 0.0386
            metrics["chance_level"] = 0.5
            metrics["repeats"] = {
                "n_repeats": 2,
                "mean": {"accuracy": 0.6875},
                "std": {"accuracy": 0.0442},
                "min": {"accuracy": 0.6563},
                "max": {"accuracy": 0.7188},
            }
        write_json(output_path(out, "cls_metrics", network="visual", model=model), metrics)
        write_tsv(
            output_path(out, "cls_folds", network="visual", model=model),
            pd.DataFrame(
                {
                    "repeat": [0, 0, 0, 1, 1, 1],
                    "fold": [0, 1, 2] * 2,
                    "accuracy": [0.75, 0.5, 1.0, 0.75, 0.75, 0.5],
                }
            ),
        )
        if model == "cnn":
            write_tsv(
                output_path(out, "cls_null", network="visual", model=model),
                pd.DataFrame({"accuracy": rng.binomial(12, 0.5, 100) / 12}),
            )
    epochs = pd.DataFrame(
        [
            {
                "repeat": r,
                "fold": f,
                "epoch": e,
                "train_loss": 0.7 / e,
                "val_loss": 0.7 / e + 0.1,
                "val_accuracy": 0.5 + 0.04 * e,
            }
            for r in range(2)
            for f in range(3)
            for e in range(1, 6)
        ]
    )
    write_tsv(output_path(out, "cls_training", network="visual"), epochs)

    # Explanations of the visual CNN (fabricated maps and tables).
    for method, descs in (("saliency", ("meanall", "tstat")), ("gradcampp", ("meanall",))):
        for desc in descs:
            relevance = _blob(grid, (10, -88, 6), 14) + 0.05 * rng.random(grid.n_voxels)
            write_nifti(
                output_path(
                    out,
                    "xai_group",
                    network="visual",
                    method=method,
                    target="predicted",
                    desc=desc,
                ),
                grid.to_img(relevance),
            )
        write_tsv(
            output_path(out, "xai_regions", network="visual", method=method, target="predicted"),
            pd.DataFrame(
                {"region": ["Intracalcarine Cortex", "Lingual Gyrus"], "mass": [0.4, 0.2]}
            ),
        )
    write_tsv(
        output_path(out, "xai_agreement", network="visual"),
        pd.DataFrame(
            {
                "method": ["saliency", "gradcampp"],
                "target": ["predicted"] * 2,
                "spearman": [0.4123, 0.2871],
                "dice": [0.31, 0.12],
                "n_significant": [40, 40],
            }
        ),
    )
    write_tsv(
        output_path(out, "xai_sanity", network="visual"),
        pd.DataFrame(
            {
                "method": ["saliency", "gradcampp"],
                "check": ["model_randomisation"] * 2,
                "layer": ["all", "all"],
                "spearman": [0.05, 0.93],
                "ssim": [0.1, 0.95],
                "verdict": ["pass", "fail"],
            }
        ),
    )
    fractions = np.linspace(0, 1, 6)
    write_tsv(
        output_path(out, "xai_faithfulness", network="visual"),
        pd.DataFrame(
            [
                {
                    "method": method,
                    "target": "predicted",
                    "curve": curve,
                    "fraction": f,
                    "probability": (1 - f) if curve == "deletion" else f,
                    "auc": 0.5,
                }
                for method in ("saliency", "gradcampp")
                for curve in ("deletion", "insertion")
                for f in fractions
            ]
        ),
    )
    write_tsv(
        output_path(out, "xai_localisation", network="visual"),
        pd.DataFrame(
            {
                "method": ["saliency", "gradcampp"],
                "target": ["predicted"] * 2,
                "mass_ratio": [3.21, 1.4],
                "pointing_game": [0.83, 0.5],
            }
        ),
    )
    return out


def statuses(html: str) -> dict[str, str]:
    """Each section's status, from the table of contents."""
    return {
        anchor: status
        for status, anchor in re.findall(r'<li class="status-([a-z-]+)"><a href="#([^"]+)"', html)
    }


def section_html(html: str) -> dict[str, str]:
    """Each section's HTML by id."""
    return dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', html, flags=re.S))


def embedded_images(html: str) -> list[tuple[str, bytes]]:
    """(mime type, decoded bytes) of every <img> source; fails on a non-data source."""
    sources = re.findall(r'<img src="([^"]*)"', html)
    images = []
    for source in sources:
        match = re.fullmatch(r"data:(image/png|image/svg\+xml);base64,([A-Za-z0-9+/=]+)", source)
        assert match, f"image not embedded: {source[:60]}"
        images.append((match.group(1), base64.b64decode(match.group(2))))
    return images
