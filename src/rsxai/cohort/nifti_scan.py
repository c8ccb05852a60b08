"""Reading what a NIfTI image holds without loading it whole.

Helpers for :mod:`rsxai.cohort.file_checks`: the TR in a header, where a field of
view lies relative to MNI space, and a one-pass streaming scan of the data.
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from rsxai.grid import MNI_FOV_MAX, MNI_FOV_MIN

_TIME_UNIT_SECONDS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}
# Bytes decompressed per read while scanning the data (a few volumes at a time).
_SCAN_CHUNK_BYTES = 1 << 24


@dataclass(frozen=True)
class DataScan:
    """What reading a whole image's data found.

    Attributes
    ----------
    n_nan, n_inf : int
        Number of NaN and of infinite values.
    bad_volumes : list of int
        Indices of the volumes (last axis) holding a NaN or an Inf.
    all_zero : bool
        True when every value is zero.
    """

    n_nan: int
    n_inf: int
    bad_volumes: list[int]
    all_zero: bool


def _read_exactly(stream, n_bytes: int) -> bytes:
    chunks, remaining = [], n_bytes
    while remaining:
        # Bounded reads: a corrupt header may claim terabytes that the stream does not hold.
        chunk = stream.read(min(remaining, _SCAN_CHUNK_BYTES))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def scan_image_data(img: nib.spatialimages.SpatialImage) -> DataScan:
    """Stream an image's data once, counting NaN, Inf and non-zero values.

    nibabel would decompress the whole array into memory (gigabytes for a
    long 2 mm series, times n_jobs) or, sliced, decompress the file again for
    every slice; reading the gzip stream volume by volume keeps memory at a
    few tens of MB and reaches the end of the stream, where gzip checks its CRC.

    Parameters
    ----------
    img : nibabel image
        Loaded with :func:`nibabel.load` (its data not read yet).

    Returns
    -------
    DataScan

    Raises
    ------
    EOFError, OSError, zlib.error
        When the stream is truncated or corrupt.
    """
    proxy = img.dataobj
    shape, dtype = tuple(proxy.shape), np.dtype(proxy.dtype)
    n_per_volume = math.prod(shape[:3])
    n_volumes = math.prod(shape[3:])
    volumes_per_chunk = max(1, _SCAN_CHUNK_BYTES // max(1, n_per_volume * dtype.itemsize))
    slope, inter = float(proxy.slope), float(proxy.inter)
    filename = str(proxy.file_like)
    opener = gzip.open if filename.endswith(".gz") else nib.openers.Opener
    n_nan = n_inf = 0
    bad_volumes: list[int] = []
    any_nonzero = False
    with opener(filename, "rb") as stream:
        stream.seek(int(proxy.offset))
        for start in range(0, n_volumes, volumes_per_chunk):
            count = min(volumes_per_chunk, n_volumes - start)
            n_bytes = count * n_per_volume * dtype.itemsize
            buffer = _read_exactly(stream, n_bytes)
            if len(buffer) < n_bytes:
                raise EOFError(
                    f"the data end after {start * n_per_volume * dtype.itemsize + len(buffer)} "
                    f"of {n_volumes * n_per_volume * dtype.itemsize} bytes"
                )
            # Volumes are the slowest axis in NIfTI's Fortran order: one row each.
            values = np.frombuffer(buffer, dtype=dtype).reshape(count, n_per_volume)
            if dtype.kind == "f":
                nan, inf = np.isnan(values), np.isinf(values)
                n_nan += int(nan.sum())
                n_inf += int(inf.sum())
                bad = np.flatnonzero((nan | inf).any(axis=1))
                bad_volumes.extend(int(index) + start for index in bad)
            if not any_nonzero:
                scaled = values if inter == 0 else values * slope + inter
                any_nonzero = bool(np.any(scaled != 0))
        # Reading to the end makes gzip compare its CRC and length trailer.
        while stream.read(_SCAN_CHUNK_BYTES):
            pass
    return DataScan(n_nan, n_inf, bad_volumes, not any_nonzero)


def header_tr(header: nib.Nifti1Header) -> float | None:
    """TR in seconds from a NIfTI header (pixdim[4] with its xyzt time unit).

    Returns None when the header has no usable time step (zero, negative or
    not finite). An unknown time unit is taken as seconds, as nibabel does.
    """
    zooms = header.get_zooms()
    if len(zooms) < 4:
        return None
    try:
        unit = header.get_xyzt_units()[1] if hasattr(header, "get_xyzt_units") else "sec"
    except KeyError:  # an xyzt_units code that NIfTI does not define: nibabel cannot name it
        unit = "unknown"
    tr = float(zooms[3]) * _TIME_UNIT_SECONDS.get(unit, 1.0)
    return tr if math.isfinite(tr) and tr > 0 else None


def mni_placement(affine: np.ndarray, shape: tuple[int, ...]) -> tuple[float, float]:
    """Where an image's field of view lies relative to the MNI brain box.

    Parameters
    ----------
    affine : ndarray of shape (4, 4)
    shape : tuple of int
        The image's spatial shape (at least 3 values).

    Returns
    -------
    centre_distance : float
        Distance (mm) from the centre of the image's world bounding box to the
        centre of the MNI box (:data:`rsxai.grid.MNI_FOV_MIN`/``MAX``).
    coverage : float
        Fraction of the MNI box's volume inside the image's bounding box.
    """
    corners = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in shape[:3]], indexing="ij"))
    corners = corners.reshape(3, -1).T
    world = corners @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]
    low, high = world.min(axis=0), world.max(axis=0)
    centre_distance = float(np.linalg.norm((low + high) / 2 - (MNI_FOV_MIN + MNI_FOV_MAX) / 2))
    overlap = np.clip(np.minimum(high, MNI_FOV_MAX) - np.maximum(low, MNI_FOV_MIN), 0, None)
    coverage = float(np.prod(overlap) / np.prod(MNI_FOV_MAX - MNI_FOV_MIN))
    return centre_distance, coverage
