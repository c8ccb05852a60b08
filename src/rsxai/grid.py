"""The analysis grid: a brain mask and its affine, the bridge between volumes and 2D arrays.

A masked image in rsxai is a 2D array of shape (n_samples, n_voxels) plus the
:class:`Grid` that turns it back into a volume, the pattern of nilearn's
maskers. Every stage that writes a map goes through :meth:`Grid.to_img`.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np

# World-space box (mm, RAS) of the MNI152 field of view used by FSL's standard
# grids; analysis grids are laid on it so that a 2 mm grid has FSL's extents.
MNI_FOV_MIN = np.array([-90.0, -126.0, -72.0])
MNI_FOV_MAX = np.array([90.0, 90.0, 108.0])


def mni_grid(voxel_size: float) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Affine and shape of the MNI analysis grid at an isotropic voxel size.

    Parameters
    ----------
    voxel_size : float
        Voxel edge in mm (2, 3 and 4 are the usual choices).

    Returns
    -------
    affine : ndarray of shape (4, 4)
        RAS affine, voxel (0, 0, 0) at the corner of the MNI field of view.
    shape : tuple of 3 int
        Grid shape covering the whole MNI field of view.
    """
    voxel_size = float(voxel_size)
    if not np.isfinite(voxel_size) or not 0.5 <= voxel_size <= 10:
        raise ValueError(
            f"voxel_size must be a number of mm between 0.5 and 10; got {voxel_size!r}."
        )
    shape = tuple(int(n) for n in np.ceil((MNI_FOV_MAX - MNI_FOV_MIN) / voxel_size) + 1)
    affine = np.diag([voxel_size, voxel_size, voxel_size, 1.0])
    affine[:3, 3] = MNI_FOV_MIN
    return affine, shape


@lru_cache(maxsize=8)
def _mni_image_on_grid(kind: str, voxel_size: float) -> np.ndarray:
    # nilearn ships these templates, so nothing is downloaded at run time.
    # Lazy: nilearn's image and plotting modules take about 1 s to import.
    from nilearn import datasets, image

    loaders = {
        "brain": datasets.load_mni152_brain_mask,
        "gm": datasets.load_mni152_gm_template,
        "t1": datasets.load_mni152_template,
    }
    source = loaders[kind](resolution=1 if voxel_size < 2 else 2)
    affine, shape = mni_grid(voxel_size)
    with warnings.catch_warnings():
        # The binary brain mask is interpolated on purpose (partial volume),
        # then thresholded at 0.5 by the caller.
        warnings.filterwarnings("ignore", message="Resampling binary images")
        resampled = image.resample_img(
            image.new_img_like(source, np.asarray(source.dataobj, dtype=np.float32)),
            target_affine=affine,
            target_shape=shape,
            interpolation="continuous",
            force_resample=True,
            copy_header=True,
        )
    data = np.asarray(resampled.dataobj, dtype=np.float32)
    data.setflags(write=False)
    return data


def mni_brain_mask(voxel_size: float) -> np.ndarray:
    """MNI152 brain mask resampled onto :func:`mni_grid` (boolean, read-only).

    Returns
    -------
    mask : ndarray of bool, shape of ``mni_grid(voxel_size)[1]``
    """
    return _mni_image_on_grid("brain", float(voxel_size)) > 0.5


def mni_grey_matter(voxel_size: float) -> np.ndarray:
    """MNI152 grey-matter probability on :func:`mni_grid` (float32 in [0, 1], read-only)."""
    return np.clip(_mni_image_on_grid("gm", float(voxel_size)), 0.0, 1.0)


def mni_template(voxel_size: float) -> np.ndarray:
    """MNI152 T1 template intensities on :func:`mni_grid` (float32, read-only)."""
    return _mni_image_on_grid("t1", float(voxel_size))


class Grid:
    """A brain mask on an affine grid: turns volumes into rows and back.

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
        Voxels analysed.
    affine : ndarray of shape (4, 4)
        Voxel-to-world (mm) transform.
    """

    def __init__(self, mask: np.ndarray, affine: np.ndarray):
        mask = np.asarray(mask)
        if mask.ndim != 3:
            raise ValueError(f"mask must be a 3D array; got shape {mask.shape}.")
        self.mask = mask.astype(bool)
        self.affine = np.asarray(affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4 x 4; got shape {self.affine.shape}.")
        if not self.mask.any():
            raise ValueError("mask is empty: no voxel is inside the brain.")

    def __repr__(self) -> str:
        # Short, for the repr of the estimators that take a grid (NetworkMaps).
        size = " x ".join(f"{edge:g}" for edge in self.voxel_size)
        return f"<Grid shape={self.shape}, {self.n_voxels} voxels of {size} mm>"

    @classmethod
    def from_img(cls, mask_img: nib.spatialimages.SpatialImage | str | Path) -> Grid:
        """Grid from a 3D mask image (non-zero voxels are inside)."""
        img = nib.load(mask_img) if isinstance(mask_img, (str, Path)) else mask_img
        return cls(np.asarray(img.dataobj) != 0, img.affine)

    @classmethod
    def mni(cls, voxel_size: float) -> Grid:
        """The MNI152 brain mask on the MNI analysis grid."""
        return cls(mni_brain_mask(voxel_size), mni_grid(voxel_size)[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the 3D grid."""
        return self.mask.shape

    @property
    def n_voxels(self) -> int:
        """Number of voxels inside the mask."""
        return int(self.mask.sum())

    @property
    def voxel_size(self) -> np.ndarray:
        """Voxel edge lengths in mm, shape (3,)."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    def mask_img(self) -> nib.Nifti1Image:
        """The mask as a uint8 NIfTI image."""
        return nib.Nifti1Image(self.mask.astype(np.uint8), self.affine)

    def to_img(self, values: np.ndarray) -> nib.Nifti1Image:
        """Put masked values back into a volume.

        Parameters
        ----------
        values : ndarray of shape (n_voxels,) or (n_samples, n_voxels)
            One row per volume.

        Returns
        -------
        img : Nifti1Image
            3D for a 1D input, otherwise 4D of shape (X, Y, Z, n_samples);
            zero outside the mask, float32.
        """
        values = np.asarray(values, dtype=np.float32)
        if values.shape[-1] != self.n_voxels or values.ndim not in (1, 2):
            raise ValueError(
                f"values must have shape (n_voxels,) or (n_samples, n_voxels) with "
                f"n_voxels={self.n_voxels}; got {values.shape}."
            )
        rows = values[None] if values.ndim == 1 else values
        volume = np.zeros((*self.shape, rows.shape[0]), dtype=np.float32)
        volume[self.mask] = rows.T
        if values.ndim == 1:
            volume = volume[..., 0]
        return nib.Nifti1Image(volume, self.affine)

    def from_img_data(self, data: np.ndarray) -> np.ndarray:
        """Take the masked voxels of a volume already on this grid.

        Parameters
        ----------
        data : ndarray of shape (X, Y, Z) or (X, Y, Z, n_samples)

        Returns
        -------
        values : ndarray of shape (n_voxels,) or (n_samples, n_voxels)
        """
        if data.shape[:3] != self.shape:
            raise ValueError(f"data of shape {data.shape} is not on the grid {self.shape}.")
        return data[self.mask].T if data.ndim == 4 else data[self.mask]

    def bounding_box(self) -> tuple[slice, slice, slice]:
        """Slices of the smallest box holding the whole mask."""
        coords = np.argwhere(self.mask)
        low, high = coords.min(axis=0), coords.max(axis=0) + 1
        return tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))

    def world_coordinates(self) -> np.ndarray:
        """World (mm) coordinates of the masked voxels, shape (n_voxels, 3)."""
        ijk = np.argwhere(self.mask)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def same_as(self, other: Grid) -> bool:
        """True when both grids have the same mask and affine."""
        return (
            self.shape == other.shape
            and np.allclose(self.affine, other.affine, atol=1e-4)
            and np.array_equal(self.mask, other.mask)
        )
