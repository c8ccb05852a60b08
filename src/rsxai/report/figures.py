"""Figures of the report as embedded images: brain maps drawn by nilearn, charts by matplotlib.

Every figure is a :class:`matplotlib.figure.Figure` with its own Agg canvas,
never a pyplot figure: building a report touches no global plotting state (a
user's open figures, the backend chosen in a notebook), and works on machines
without a display. A figure becomes an ``<img>`` whose source is the PNG or
SVG bytes in base64, so the report needs no other file and no network.
Brain maps are drawn over the MNI152 template that nilearn ships.
"""

from __future__ import annotations

import base64
import contextlib
import io
import struct
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import matplotlib
import nibabel as nib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rsxai.report.html import escape

#: Threshold (|z|) at which z-scored ICA components are drawn, as FSL's MELODIC reports do.
COMPONENT_Z_THRESHOLD = 2.3

# Same picture, same bytes: fixed SVG ids, no dates or software versions in the files.
_RC = {"svg.hashsalt": "rsxai-report", "svg.fonttype": "path", "font.size": 9.0}


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches on an Agg canvas (no pyplot)."""
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


@contextlib.contextmanager
def drawing() -> Iterator[None]:
    """Context for drawing: the report's matplotlib settings, display-only warnings silenced.

    nilearn warns about display choices (an empty map after thresholding,
    resampling for display); those concern the picture, not the results, and
    would only clutter the log of a run.
    """
    with matplotlib.rc_context(_RC), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _png_size(data: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    return width, height


def image_tag(
    figure: Figure, alt: str, *, fmt: str = "png", dpi: float = 100, tight: bool = True
) -> str:
    """Render ``figure`` and return an ``<img>`` holding it in base64.

    Parameters
    ----------
    figure : Figure
        A figure from :func:`new_figure` (closed by being dropped).
    alt : str
        Text alternative (what the figure shows).
    fmt : {"png", "svg"}
        PNG for brain maps (raster), SVG for charts (crisp at any zoom).
    dpi : float
        Resolution of a PNG.
    tight : bool
        Crop the margins (matplotlib then draws the figure twice; nilearn's
        displays already fill their figure and skip it).
    """
    if fmt not in ("png", "svg"):
        raise ValueError(f"fmt must be 'png' or 'svg'; got {fmt!r}.")
    buffer = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    with drawing():
        figure.savefig(
            buffer,
            format=fmt,
            dpi=dpi,
            metadata=metadata,
            facecolor="white",
            bbox_inches="tight" if tight else None,
        )
    data = buffer.getvalue()
    encoded = base64.b64encode(data).decode("ascii")
    size = ""
    if fmt == "png":
        size = ' width="{}" height="{}"'.format(*_png_size(data))
    mime = "image/png" if fmt == "png" else "image/svg+xml"
    return f'<img src="data:{mime};base64,{encoded}" alt="{escape(alt)}"{size}>'


def load_volume(path: str | Path, index: int | None = None) -> nib.Nifti1Image:
    """A 3D image from a NIfTI file (volume ``index`` of a 4D file)."""
    img = nib.load(path)
    if index is None:
        data = np.asarray(img.dataobj, dtype=np.float32)
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
    else:
        data = np.asarray(img.dataobj[..., index], dtype=np.float32)
    return nib.Nifti1Image(data, img.affine)


def masked(img: nib.Nifti1Image, keep: np.ndarray) -> nib.Nifti1Image:
    """``img`` with voxels outside ``keep`` (bool, same shape) set to zero, for display."""
    data = np.where(keep, np.asarray(img.dataobj, dtype=np.float32), 0.0)
    return nib.Nifti1Image(data.astype(np.float32), img.affine)


def _largest_magnitude(img: nib.Nifti1Image) -> float:
    data = np.asarray(img.dataobj, dtype=np.float32)
    finite = data[np.isfinite(data)]
    return float(np.abs(finite).max()) if finite.size else 0.0


def glass_brain(
    img: nib.Nifti1Image,
    alt: str,
    *,
    threshold: float,
    title: str | None = None,
    plot_abs: bool = False,
    cmap: str = "cold_hot",
    colorbar: bool = True,
    display_mode: str = "ortho",
    size: tuple[float, float] = (4.6, 1.8),
    dpi: float = 100,
    annotate: bool = True,
    vmax: float | None = None,
) -> str:
    """A glass-brain view (maximum-intensity projections) of a 3D map as an ``<img>``.

    ``vmax`` fixes the colour scale (e.g. shared by several maps); by default
    it is the map's largest magnitude.
    """
    # Lazy: nilearn's image and plotting modules take about 1 s to import.
    from nilearn import plotting

    vmax = _largest_magnitude(img) if vmax is None else vmax
    figure = new_figure(*size)
    with drawing():
        plotting.plot_glass_brain(
            img,
            figure=figure,
            display_mode=display_mode,
            # Kept even when nothing passes it: zero must stay transparent, not
            # take the colour of the middle of the scale (black in cold_hot).
            threshold=threshold,
            plot_abs=plot_abs,
            cmap=cmap,
            colorbar=colorbar and vmax > 0,
            vmax=vmax if vmax > 0 else 1.0,
            symmetric_cbar=not plot_abs,
            title=title,
            annotate=annotate,
            black_bg=False,
        )
    return image_tag(figure, alt, dpi=dpi, tight=False)


def stat_slices(
    img: nib.Nifti1Image,
    alt: str,
    *,
    threshold: float | None,
    cut_coords: Sequence[float] | int | None = None,
    display_mode: str = "ortho",
    title: str | None = None,
    contour_img: nib.Nifti1Image | None = None,
    contour_level: float | None = None,
    cmap: str = "RdBu_r",
    symmetric: bool = True,
    size: tuple[float, float] = (4.6, 1.8),
    dpi: float = 100,
) -> str:
    """Slices of a 3D map over nilearn's MNI152 template as an ``<img>``.

    Parameters
    ----------
    threshold : float or None
        Voxels with ``|value| <= threshold`` are transparent.
    cut_coords : sequence of float or int, optional
        MNI coordinates of the cuts (``ortho``) or the number of cuts.
    contour_img, contour_level : optional
        Draw the ``contour_level`` outline of ``contour_img`` in black (e.g.
        the FWE-significant region), when it has voxels above the level.
    """
    # Lazy: nilearn's image and plotting modules take about 1 s to import.
    from nilearn import plotting

    vmax = _largest_magnitude(img)
    figure = new_figure(*size)
    with drawing():
        display = plotting.plot_stat_map(
            img,
            figure=figure,
            display_mode=display_mode,
            cut_coords=cut_coords,
            threshold=threshold,
            title=title,
            cmap=cmap,
            symmetric_cbar=symmetric,
            colorbar=vmax > 0,
            vmin=None if symmetric else 0.0,
            vmax=vmax if vmax > 0 else 1.0,
            black_bg=False,
            draw_cross=False,
        )
        if contour_img is not None and contour_level is not None:
            values = np.asarray(contour_img.dataobj, dtype=np.float32)
            if np.nanmax(values) > contour_level:
                display.add_contours(
                    contour_img, levels=[contour_level], colors="black", linewidths=1.2
                )
    return image_tag(figure, alt, dpi=dpi, tight=False)


def component_thumbnail(img: nib.Nifti1Image, alt: str, *, vmax: float) -> str:
    """A small axial glass brain of a z-scored component, shown where ``|z| > 2.3``.

    ``vmax`` is shared by all components so that their colours compare. One
    view only: nilearn draws the sagittal outline from ~10,000 patches (most
    of a second per map), which would dominate the report for 20+ components.
    """
    return glass_brain(
        img,
        alt,
        threshold=COMPONENT_Z_THRESHOLD,
        colorbar=False,
        annotate=False,
        display_mode="z",
        size=(1.1, 1.3),
        dpi=72,
        vmax=vmax,
    )
