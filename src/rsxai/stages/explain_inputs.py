"""What the explain stage reads: the classify stage's held-out data, the statistics, the truth.

Everything comes from the output folder (and, on simulated data, the
simulator's ``ground_truth`` folder beside the input); no stage is imported.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import nibabel as nib
import numpy as np
import pandas as pd

from rsxai.cnn import CNNClassifier
from rsxai.exceptions import InputError
from rsxai.grid import Grid
from rsxai.outputs import output_path, read_json
from rsxai.simulate import load_ground_truth

logger = logging.getLogger(__name__)

#: FWE-corrected p below which a voxel counts as significant (the stats stage's threshold).
FWE_ALPHA = 0.05

#: A voxel belongs to a planted effect where the planted change of the map is at
#: least this fraction of the effect's largest change (its half-maximum region).
EFFECT_REGION_FRACTION = 0.5

#: The first repeat of the cross-validation is explained: its held-out maps are written.
EXPLAINED_REPEAT = 0
#: A network's territory: voxels of its group map above this z (across voxels),
#: the threshold at which FSL's MELODIC reports show component maps.
NETWORK_REGION_Z = 2.3


@dataclass
class HeldOutData:
    """One network's held-out subjects, as the classify stage left them.

    Attributes
    ----------
    participant_id, group : list of str
        In cohort order (the order of the held-out maps).
    maps : ndarray of shape (n_subjects, n_voxels)
        The map each subject had when it was held out (first repeat).
    fold_of : ndarray of int, shape (n_subjects,)
    y_true : ndarray of int, shape (n_subjects,)
        1 for patients.
    fold_models : dict of int to CNNClassifier
    """

    participant_id: list[str]
    group: list[str]
    maps: np.ndarray
    fold_of: np.ndarray
    y_true: np.ndarray
    fold_models: dict[int, CNNClassifier]


def explained_networks(out_dir: Path, summary: dict) -> list[str]:
    """Networks with a CNN to explain: held-out maps and CNN predictions present."""
    networks = list(summary.get("networks", {}))
    return [
        network
        for network in networks
        if output_path(out_dir, "cls_heldout_maps", network=network).exists()
        and output_path(out_dir, "cls_predictions", network=network, model="cnn").exists()
    ]


def load_heldout(out_dir: Path, network: str, grid: Grid, *, device: str = "auto") -> HeldOutData:
    """Read one network's held-out maps, subjects, folds and fold models (first repeat).

    Raises
    ------
    InputError
        Naming the missing or inconsistent file.
    """
    maps_path = output_path(out_dir, "cls_heldout_maps", network=network)
    order = pd.read_csv(
        output_path(out_dir, "cls_heldout_order", network=network), sep="\t", dtype=str
    )
    predictions_path = output_path(out_dir, "cls_predictions", network=network, model="cnn")
    predictions = pd.read_csv(predictions_path, sep="\t", dtype={"subject": str})
    predictions = predictions[predictions["repeat"] == EXPLAINED_REPEAT].set_index("subject")
    img = nib.load(maps_path)
    if img.shape[:3] != grid.shape or not np.allclose(img.affine, grid.affine, atol=1e-4):
        raise InputError(
            f"{maps_path}: not on the grid of {output_path(out_dir, 'mask')}; run the classify "
            "stage again."
        )
    data = np.asarray(img.dataobj, dtype=np.float32)
    maps = grid.from_img_data(data if data.ndim == 4 else data[..., None])
    labels = order["participant_id"].str.removeprefix("sub-")
    missing = sorted(set(labels) - set(predictions.index))
    if len(order) != len(maps) or missing:
        raise InputError(
            f"{predictions_path}: held-out maps ({len(maps)}) and subjects ({len(order)}) do not "
            f"match its repeat-{EXPLAINED_REPEAT} predictions (missing: {missing[:5]}); run the "
            "classify stage again."
        )
    fold_of = predictions.loc[labels, "fold"].to_numpy(dtype=int)
    fold_models = {}
    for fold in np.unique(fold_of):
        path = output_path(
            out_dir, "cls_weights", network=network, repeat=EXPLAINED_REPEAT, fold=int(fold)
        )
        if not path.exists():
            raise InputError(
                f"{path} is missing: the CNN of fold {fold} is needed to explain its held-out "
                "subjects. Run the classify stage again."
            )
        fold_models[int(fold)] = CNNClassifier.from_weights(path, grid.mask, device=device)
    return HeldOutData(
        participant_id=order["participant_id"].tolist(),
        group=order["group"].tolist(),
        maps=maps,
        fold_of=fold_of,
        y_true=predictions.loc[labels, "y_true"].to_numpy(dtype=int),
        fold_models=fold_models,
    )


def statistics_maps(out_dir: Path, summary: dict, network: str, grid: Grid) -> dict | None:
    """|t| and the FWE-significant voxels of a network's group comparison, or None.

    The two-sided contrast is used when it was run. Otherwise |t| is that of
    the first contrast (the one-sided contrasts' t maps differ in sign only)
    and a voxel is significant when it is in either one-sided contrast (at
    p_FWE < 0.05, TFCE-based when TFCE was run). The stats stage corrects
    those p-values over the voxels and the contrasts of the network, so the
    union holds the family-wise error at 0.05; folders of an earlier rsxai,
    whose p-values were corrected within each contrast only, are read as they
    are, and ``correction`` says so.

    Returns
    -------
    dict or None
        ``abs_t`` (n_voxels,), ``significant`` (n_voxels,) bool, ``t_map``
        (path relative to the folder), ``contrasts`` (list), ``inference``,
        ``correction`` (str: what the significant voxels are corrected over),
        ``network_region`` (n_voxels,) bool or None: the network's territory
        (:func:`network_region`); None when the stats stage left no maps for
        the network.
    """
    stats = summary.get("stats") or {}
    contrasts = stats.get("networks", {}).get(network)
    if not contrasts:
        return None
    chosen = ["two-sided"] if "two-sided" in contrasts else list(contrasts)
    first = contrasts[chosen[0]]
    abs_t = np.abs(_masked(out_dir / first["maps"]["t"], grid))
    significant = np.zeros(grid.n_voxels, dtype=bool)
    for contrast in chosen:
        entry = contrasts[contrast]
        stat = "logpFWEtfce" if entry.get("inference") == "TFCE" else "logpFWEt"
        p_fwe = 10.0 ** -_masked(out_dir / entry["maps"][stat], grid).astype(np.float64)
        # -log10 p was stored in float32: a p of exactly 0.05 may come back a hair
        # below it, which the stats stage (p < 0.05) did not count as significant.
        inside = p_fwe < FWE_ALPHA * (1 - 1e-5)
        expected = entry.get("n_fwe_significant_voxels")
        if expected is not None and int(inside.sum()) != int(expected):
            logger.warning(
                "explain: %s %s: %d FWE-significant voxels read from %s, the stats summary "
                "says %d.",
                network,
                contrast,
                int(inside.sum()),
                entry["maps"][stat],
                expected,
            )
        significant |= inside
    return {
        "abs_t": abs_t,
        "significant": significant,
        "t_map": first["maps"]["t"],
        "contrasts": chosen,
        "inference": first.get("inference"),
        "correction": _correction(stats.get("fwe_contrasts"), list(contrasts), chosen),
        "network_region": network_region(out_dir, summary, network, grid),
    }


def _correction(family: list[str] | None, tested: list[str], chosen: list[str]) -> str:
    """What the significant voxels of :func:`statistics_maps` are corrected over, in words."""
    voxels_of = " or ".join(chosen)
    if family is None and len(tested) > 1:
        # summary.json of an rsxai before the correction over contrasts.
        return (
            f"p_FWE < {FWE_ALPHA} over the voxels of each contrast only, not corrected over the "
            f"{len(tested)} contrasts ({', '.join(tested)}); voxels of {voxels_of}"
        )
    family = family or tested
    if len(family) == 1:
        return f"p_FWE < {FWE_ALPHA} over the voxels of {family[0]}"
    return (
        f"p_FWE < {FWE_ALPHA} over the voxels and the {len(family)} contrasts "
        f"({', '.join(family)}; maximum statistic); voxels of {voxels_of}"
    )


def network_region(out_dir: Path, summary: dict, network: str, grid: Grid) -> np.ndarray | None:
    """The network's territory: its group map z-scored across voxels, above NETWORK_REGION_Z.

    Returns
    -------
    ndarray of bool, shape (n_voxels,), or None
        None when the group map is not in the folder or nothing is above the threshold.
    """
    relative = (summary.get("networks") or {}).get(network, {}).get("group_map")
    if not relative or not (out_dir / relative).exists():
        return None
    values = _masked(out_dir / relative, grid).reshape(-1).astype(np.float64)
    spread = values.std()
    if spread == 0:
        return None
    region = (values - values.mean()) / spread > NETWORK_REGION_Z
    return region if region.any() else None


def _masked(path: Path, grid: Grid) -> np.ndarray:
    return grid.from_img_data(np.asarray(nib.load(path).dataobj, dtype=np.float32))


def find_ground_truth(out_dir: Path, input_paths: Iterable[str | Path] = ()) -> Path | None:
    """The simulator's ``ground_truth`` folder of the run's input, or None for real data.

    Looked for beside the input paths given, the run's input recorded in
    ``dataset_description.json`` (SourceDatasets) and ``provenance.json``,
    and up to two folders above each (the input may be the fMRIPrep folder
    ``ROOT/derivatives/fmriprep`` of the simulated dataset ``ROOT``).
    """
    candidates = [Path(p) for p in input_paths if p]
    description = output_path(out_dir, "dataset_description")
    if description.exists():
        for source in read_json(description).get("SourceDatasets", []):
            url = urlparse(source.get("URL", ""))
            if url.scheme == "file":
                candidates.append(Path(unquote(url.path)))
    provenance = output_path(out_dir, "provenance")
    if provenance.exists() and read_json(provenance).get("input"):
        candidates.append(Path(read_json(provenance)["input"]))
    for candidate in candidates:
        for folder in (candidate, *list(candidate.parents)[:2]):
            truth = folder / "ground_truth"
            if (truth / "effects.tsv").exists() and (truth / "parameters.json").exists():
                return truth
    return None


def effect_regions(ground_truth_dir: Path, grid: Grid) -> dict[str, np.ndarray]:
    """Planted effect region of each network, as masked bool arrays on ``grid``.

    A voxel is in the region where the planted change of the network's map
    (``effects.nii.gz``: network map x sign x strength x profile) reaches
    :data:`EFFECT_REGION_FRACTION` of the effect's largest change inside the
    mask; several effects of one network are united. Networks without an
    effect have none.
    """
    truth = load_ground_truth(ground_truth_dir)
    if not len(truth.effect_table):
        return {}
    effects = truth.effects
    if effects.shape[:3] != grid.shape or not np.allclose(truth.affine, grid.affine, atol=1e-4):
        # Lazy: nilearn's image and plotting modules take about 1 s to import.
        from nilearn.image import resample_img

        effects = resample_img(
            nib.Nifti1Image(effects, truth.affine),
            target_affine=grid.affine,
            target_shape=grid.shape,
            interpolation="linear",
            force_resample=True,
            copy_header=True,
        ).get_fdata(dtype=np.float32)
    regions: dict[str, np.ndarray] = {}
    for k, network in enumerate(truth.effect_table["network"]):
        change = np.abs(grid.from_img_data(effects[..., k]))
        if change.max() > 0:
            region = change >= EFFECT_REGION_FRACTION * change.max()
            regions[network] = regions.get(network, np.zeros_like(region)) | region
    return regions
