"""Reference resting-state network templates on an analysis grid.

Templates are maps on the masked voxels of a :class:`~rsxai.grid.Grid`. The
built-in set (:func:`builtin_templates`) is made offline from the Seitzman et
al. 300-ROI atlas that nilearn ships (``fetch_coords_seitzman_2018``);
:func:`load_templates` reads a user's own (a 4D NIfTI of network maps, or a 3D
label image such as the Yeo 2011 or Shirer 2012 networks). :mod:`rsxai.networks`
matches components to them.

References
----------
Seitzman BA et al. (2020) A set of functionally-defined brain regions with
improved representation of the subcortex and cerebellum. NeuroImage 206:116290.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nibabel.affines import apply_affine
from scipy.spatial import cKDTree
from scipy.special import erf

from rsxai.exceptions import InputError
from rsxai.grid import Grid

# Seitzman et al. network names -> canonical rsxai names, in the order the
# built-in templates are returned. "unassigned" ROIs belong to no template.
SEITZMAN_NETWORKS: dict[str, tuple[str, ...]] = {
    "sensorimotor": ("SomatomotorDorsal", "SomatomotorLateral"),
    "visual": ("Visual",),
    "default_mode": ("DefaultMode",),
    "frontoparietal": ("FrontoParietal",),
    "dorsal_attention": ("DorsalAttention",),
    "ventral_attention": ("VentralAttention",),
    "salience": ("Salience",),
    "cingulo_opercular": ("CinguloOpercular",),
    "auditory": ("Auditory",),
    "medial_temporal": ("MedialTemporalLobe",),
    "parietomedial": ("ParietoMedial",),
    "reward": ("Reward",),
}

# Networks defined by their deep ROIs keep them; the others are matched on cortex only.
DEEP_NETWORKS = frozenset({"medial_temporal", "reward"})

# Each ROI of the atlas becomes a ball this much wider than the ROI itself,
# Gaussian-smoothed, so that templates tolerate the spatial spread of ICA maps.
SPHERE_PADDING_MM = 6.0
SMOOTHING_FWHM_MM = 12.0
# A template image with less of its mass than this inside the analysis brain
# mask is taken to be in another space.
MIN_MASS_IN_MASK = 0.5


@dataclass(frozen=True)
class NetworkTemplates:
    """Reference network maps on the masked voxels of a grid.

    Attributes
    ----------
    names : tuple of str, length N
        One name per template.
    maps : ndarray of shape (N, n_voxels)
        One row per template, columns in the order of ``Grid.from_img_data``.
    """

    names: tuple[str, ...]
    maps: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "names", tuple(str(name) for name in self.names))
        maps = np.asarray(self.maps)
        if maps.ndim != 2 or maps.shape[0] != len(self.names):
            raise ValueError(
                f"maps must have shape (n_templates={len(self.names)}, n_voxels); "
                f"got {maps.shape}."
            )
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"template names must be unique; got {list(self.names)}.")
        object.__setattr__(self, "maps", maps)


def smooth_ball(distance: np.ndarray, radius: float, sigma: float) -> np.ndarray:
    """A uniform ball convolved with an isotropic 3D Gaussian, by distance from its centre.

    The value at distance ``d`` is the probability that a Gaussian of standard
    deviation ``sigma`` centred ``d`` away from the ball's centre falls inside
    it (the non-central chi distribution with 3 degrees of freedom); the
    closed form below is that integral, exact on any grid and voxel size.

    Parameters
    ----------
    distance : ndarray
        Distances (mm) from the ball's centre.
    radius, sigma : float
        Ball radius and Gaussian standard deviation (mm).

    Returns
    -------
    values : ndarray, shape of ``distance``, in [0, 1]
    """
    # d -> 0 is a removable singularity; the error of the clamp is O(d^2).
    d = np.maximum(np.asarray(distance, dtype=np.float64), 1e-3 * sigma)
    scale = sigma * np.sqrt(2.0)
    inside = 0.5 * (erf((radius - d) / scale) + erf((radius + d) / scale))
    edge = np.exp(-((radius - d) ** 2) / scale**2) - np.exp(-((radius + d) ** 2) / scale**2)
    return np.clip(inside - sigma / (d * np.sqrt(2.0 * np.pi)) * edge, 0.0, 1.0)


def builtin_templates(
    grid: Grid,
    *,
    padding_mm: float = SPHERE_PADDING_MM,
    fwhm_mm: float = SMOOTHING_FWHM_MM,
) -> NetworkTemplates:
    """Network templates from the Seitzman et al. (2020) 300-ROI atlas, on any grid.

    Each template is the sum over the network's ROIs of a ball (ROI radius +
    ``padding_mm``) smoothed by a Gaussian of ``fwhm_mm``, evaluated at the
    world coordinates of the grid's masked voxels. Sensorimotor joins the
    atlas's SomatomotorDorsal and SomatomotorLateral ROIs; the "unassigned"
    ROIs are left out, and so are the subcortical and cerebellar ROIs of the
    cortical networks (all but :data:`DEEP_NETWORKS`; Seitzman
    assigns, e.g., putamen and thalamus to SomatomotorDorsal): resting-state ICA
    networks are matched on their cortical pattern, as with Yeo's cortical
    templates, and the deep ROIs pulled the sensorimotor template's peak into
    the putamen. Nothing is downloaded: nilearn ships the coordinates.

    Parameters
    ----------
    grid : Grid
        Analysis grid, in MNI152 space (any orientation and voxel size).
    padding_mm, fwhm_mm : float
        Growth of each ROI's radius and smoothing, in mm.

    Returns
    -------
    NetworkTemplates
        The 12 networks of :data:`SEITZMAN_NETWORKS`, maps of shape (12, n_voxels).
    """
    # Lazy: nilearn's image and plotting modules take about 1 s to import.
    from nilearn.datasets import fetch_coords_seitzman_2018

    atlas = fetch_coords_seitzman_2018()
    centres = atlas.rois[["x", "y", "z"]].to_numpy(dtype=np.float64)
    radii = np.asarray(atlas.radius, dtype=np.float64) + padding_mm
    sigma = fwhm_mm / np.sqrt(8.0 * np.log(2.0))
    coordinates = grid.world_coordinates()
    tree = cKDTree(coordinates)
    maps = np.zeros((len(SEITZMAN_NETWORKS), grid.n_voxels))
    cortical = np.char.startswith(np.asarray(atlas.regions, dtype=str), "cortex")
    for row, (name, parts) in enumerate(SEITZMAN_NETWORKS.items()):
        kept = cortical | (name in DEEP_NETWORKS)
        for roi in np.flatnonzero(np.isin(np.asarray(atlas.networks), parts) & kept):
            # Beyond 5 sigma past the ball's edge the smoothed ball is < 1e-6.
            voxels = np.asarray(tree.query_ball_point(centres[roi], radii[roi] + 5.0 * sigma))
            if voxels.size:
                distance = np.linalg.norm(coordinates[voxels] - centres[roi], axis=1)
                maps[row, voxels] += smooth_ball(distance, radii[roi], sigma)
    return NetworkTemplates(tuple(SEITZMAN_NETWORKS), maps.astype(np.float32))


def _names_file(path: Path) -> Path | None:
    stem = re.sub(r"\.nii(\.gz)?$", "", path.name)
    # BIDS keeps one sidecar for all spaces/resolutions: "<x>_space-A_res-2_dseg.nii.gz"
    # is described by "<x>_dseg.tsv".
    without_entities = "_".join(part for part in stem.split("_") if "-" not in part)
    for candidate in (stem + ".tsv", stem + ".txt", without_entities + ".tsv"):
        if (path.parent / candidate).is_file():
            return path.parent / candidate
    return None


def _read_names(names_path: Path, with_index: bool) -> tuple[list[str], list[int] | None]:
    if names_path.suffix == ".txt":
        names = [line.strip() for line in names_path.read_text().splitlines() if line.strip()]
        return names, None
    try:
        table = pd.read_csv(names_path, sep="\t")
    except (OSError, ValueError) as error:
        raise InputError(f"{names_path}: cannot read the names TSV ({error}).") from error
    if "name" not in table.columns or (with_index and "index" not in table.columns):
        needed = "'index' and 'name'" if with_index else "'name'"
        raise InputError(
            f"{names_path}: needs a header with columns {needed}; got "
            f"{list(table.columns)}. Write one row per network."
        )
    index = table["index"].astype(int).tolist() if with_index else None
    return table["name"].astype(str).tolist(), index


def _template_names(path: Path, names, keys: np.ndarray, is_labels: bool) -> list[str]:
    """One name per map; ``keys`` are the image's labels, or volume numbers (0-based)."""
    what = "label" if is_labels else "volume"
    source, index = "names=", None
    if names is None:
        names_path = _names_file(path)
        if names_path is None:
            raise InputError(
                f"{path}: no names file beside it (looked for a same-stem .tsv or .txt); "
                "write one or give names=[...]."
            )
        source = str(names_path)
        names, index = _read_names(names_path, with_index=is_labels)
    elif isinstance(names, Mapping):
        index, names = [int(key) for key in names], list(names.values())
    names = [str(name) for name in names]
    if index is not None:
        by_key = dict(zip(index, names, strict=True))
        missing = [int(key) for key in keys if key not in by_key]
        extra = sorted(set(index) - {int(key) for key in keys})
        if missing or extra:
            raise InputError(
                f"{source}: names do not match the {what}s of {path}: {what}s without a "
                f"name {missing}, names of {what}s absent from the image {extra}. Give one "
                f"name per {what} in the image."
            )
        names = [by_key[int(key)] for key in keys]
    if len(names) != len(keys):
        raise InputError(
            f"{source}: {len(names)} names for the {len(keys)} {what}s of {path}; "
            f"give exactly one name per {what}."
        )
    if len(set(names)) != len(names):
        raise InputError(f"{source}: template names must be unique; got {names}.")
    return names


def _mass_in_mask(weights: np.ndarray, affine: np.ndarray, grid: Grid) -> float:
    ijk = np.argwhere(weights > 0)
    if ijk.size == 0:
        return 0.0
    on_grid = np.rint(apply_affine(np.linalg.inv(grid.affine), apply_affine(affine, ijk)))
    on_grid = on_grid.astype(int)
    inside = np.all((on_grid >= 0) & (on_grid < grid.shape), axis=1)
    in_mask = np.zeros(len(ijk), dtype=bool)
    in_mask[inside] = grid.mask[tuple(on_grid[inside].T)]
    mass = weights[tuple(ijk.T)]
    return float(mass[in_mask].sum() / mass.sum())


def load_templates(
    path: str | Path,
    grid: Grid,
    *,
    names: Sequence[str] | Mapping[int, str] | None = None,
) -> NetworkTemplates:
    """Read a user's network templates and resample them onto the grid by affine.

    Parameters
    ----------
    path : str or Path
        Either a 4D NIfTI, one volume per network (continuous interpolation),
        or a 3D label image, one integer label per network and 0 outside
        (nearest-neighbour; each label becomes a binary map). A 3D image with
        non-integer values is a single map. Non-finite values count as 0.
    grid : Grid
        Analysis grid; the templates must be in its space (MNI152).
    names : sequence of str or mapping of int to str, optional
        One name per volume, or per label in increasing label order; a mapping
        gives label (or 0-based volume) -> name. By default read from a names
        file beside ``path``: ``<stem>.tsv`` or ``<stem>.txt``, or the BIDS
        sidecar without the key-value entities (``<x>_space-MNI_res-2_dseg.nii.gz``
        -> ``<x>_dseg.tsv``). A TSV has a ``name`` column, rows in volume
        order (and an ``index`` column of labels for a label image); a .txt
        holds one name per line, in volume or increasing label order.

    Returns
    -------
    NetworkTemplates
        Maps of shape (N, grid.n_voxels), names as given.

    Raises
    ------
    InputError
        Unreadable image, names not matching the maps, or an image whose
        content mostly falls outside the grid's brain mask (another space).
    """
    # Lazy: nilearn's image and plotting modules take about 1 s to import.
    from nilearn.image import resample_img

    path = Path(path)
    try:
        img = nib.load(path)
    except (OSError, nib.filebasedimages.ImageFileError) as error:
        raise InputError(
            f"{path}: cannot read the template image ({error}); give a NIfTI file."
        ) from error
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim not in (3, 4):
        raise InputError(
            f"{path}: template image has shape {data.shape}; give a 4D image (one volume "
            "per network) or a 3D label image."
        )
    data[~np.isfinite(data)] = 0.0
    is_labels = data.ndim == 3 and np.array_equal(data, np.round(data))
    if is_labels:
        labels = np.unique(data[data != 0]).astype(int)
        if labels.size == 0:
            raise InputError(f"{path}: the label image is empty (all zero).")
        names = _template_names(path, names, labels, is_labels=True)
        weights = (data != 0).astype(np.float32)
    else:
        data = data if data.ndim == 4 else data[..., None]
        names = _template_names(path, names, np.arange(data.shape[3]), is_labels=False)
        weights = np.abs(data).sum(axis=3)
    fraction = _mass_in_mask(weights, img.affine, grid)
    if fraction < MIN_MASS_IN_MASK:
        raise InputError(
            f"{path}: only {fraction:.0%} of the template lies inside the analysis brain mask; "
            "it does not overlap the analysis grid, so it is probably not in MNI152 space. "
            "Register or resample it to MNI152 first."
        )
    resampled = resample_img(
        nib.Nifti1Image(data, img.affine),
        target_affine=grid.affine,
        target_shape=grid.shape,
        interpolation="nearest" if is_labels else "continuous",
        force_resample=True,
        copy_header=True,
    )
    values = grid.from_img_data(np.asarray(resampled.dataobj))
    maps = (values[None, :] == labels[:, None]) if is_labels else values
    maps = np.asarray(maps, dtype=np.float32)
    empty = [name for name, row in zip(names, maps, strict=True) if not np.any(row)]
    if empty:
        raise InputError(
            f"{path}: templates {empty} have no voxel inside the analysis brain mask; "
            "leave them out or check the image's space."
        )
    return NetworkTemplates(tuple(names), maps)
