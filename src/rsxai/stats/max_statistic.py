"""Maximum-statistic permutation inference: null maxima of t and TFCE, and FWE p-values.

:func:`summarise_batch` turns a batch of permuted t maps into what
:func:`rsxai.stats.permutation_glm` keeps of it: the maximum over voxels of
the tested statistic (t, and TFCE when asked) and the voxelwise counts of
permuted values at least as large as the observed ones; :func:`run_batches`
does so for a worker's share of batches; :func:`fwe_p_values` turns the null
maxima into family-wise error corrected p-values. They are apart from
:mod:`rsxai.stats`, which checks the inputs, fits the design and dispatches
the batches, because they hold the inference on one batch, with no
knowledge of the design or of parallel dispatch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rsxai.parallel import with_aligned_arrays
from rsxai.stats.design import PermutedT
from rsxai.stats.tfce import tfce_positive

__all__ = [
    "BATCH_SIZE",
    "BatchSettings",
    "BatchSummary",
    "fwe_p_values",
    "run_batches",
    "summarise_batch",
]

# Permutations per matrix product and per TFCE sweep: large enough to keep
# NumPy's per-call overhead small, small enough for two workers' memory.
# Fixed (never derived from n_jobs), so every permutation is computed in the
# same batch whatever the number of workers: results do not depend on n_jobs.
BATCH_SIZE = 64


def fwe_p_values(observed: np.ndarray, null_max: np.ndarray) -> np.ndarray:
    """Family-wise corrected p: the fraction of null maxima at least as large.

    Parameters
    ----------
    observed : ndarray of shape (n_voxels,)
    null_max : ndarray of shape (n_permutations,)
        Maximum statistic of each permutation, the unpermuted data included.

    Returns
    -------
    p : ndarray of shape (n_voxels,)
    """
    ordered = np.sort(null_max)
    below = np.searchsorted(ordered, observed, side="left")
    return (ordered.size - below) / ordered.size


@dataclass(frozen=True)
class BatchSettings:
    """How each batch is summarised: the test's sidedness and the TFCE settings.

    Attributes
    ----------
    two_sided : bool
        Test ``|t|`` (and ``|TFCE|``, positive and negative clusters enhanced apart).
    tfce : bool
        Compute TFCE maxima.
    neighbours : ndarray or None
        Voxel neighbour table of :func:`rsxai.stats.tfce.neighbour_table` (None without TFCE).
    dh, h, e : float
        TFCE height step and height and extent exponents (``dh`` None without TFCE).
    """

    two_sided: bool
    tfce: bool
    neighbours: np.ndarray | None
    dh: float | None
    h: float
    e: float


@dataclass(frozen=True)
class BatchSummary:
    """What is kept of one batch of permutations.

    Attributes
    ----------
    max_t : ndarray of shape (n_batch,)
        Maximum over voxels of the tested t of each permutation.
    exceed_counts : ndarray of int, shape (n_voxels,)
        Permutations whose tested t is at least the observed one, per voxel.
    max_tfce : ndarray of shape (n_batch,) or None
        Maximum over voxels of the tested TFCE (None without TFCE).
    tfce_first : ndarray of shape (n_voxels,) or None
        The TFCE map of the batch's first permutation (the observed one in the
        first batch); None in the batches of :func:`run_batches`.
    """

    max_t: np.ndarray
    exceed_counts: np.ndarray
    max_tfce: np.ndarray | None
    tfce_first: np.ndarray | None


def summarise_batch(t: np.ndarray, tested: np.ndarray, settings: BatchSettings) -> BatchSummary:
    """Maxima and voxelwise exceedance counts of a batch of permuted t maps.

    Parameters
    ----------
    t : ndarray of shape (n_batch, n_voxels)
        Permuted t maps, signed as the contrast.
    tested : ndarray of shape (n_voxels,)
        The observed tested statistic (``|t|`` when two-sided).
    settings : BatchSettings

    Returns
    -------
    BatchSummary
    """
    statistic = np.abs(t) if settings.two_sided else t
    max_tfce = tfce_first = None
    if settings.tfce:
        # Two-sided: positive and negative clusters in one sweep over [t; -t].
        maps = np.vstack([t, -t]) if settings.two_sided else t
        enhanced = tfce_positive(maps, settings.neighbours, settings.dh, settings.h, settings.e)
        if settings.two_sided:
            enhanced = enhanced[: len(t)] - enhanced[len(t) :]
        max_tfce = (np.abs(enhanced) if settings.two_sided else enhanced).max(axis=1)
        tfce_first = enhanced[0]
    return BatchSummary(
        max_t=statistic.max(axis=1),
        exceed_counts=(statistic >= tested).sum(axis=0),
        max_tfce=max_tfce,
        tfce_first=tfce_first,
    )


def run_batches(
    model: PermutedT,
    batches: list[np.ndarray],
    sign: float,
    tested: np.ndarray,
    settings: BatchSettings,
) -> list[BatchSummary]:
    """:func:`summarise_batch` of ``sign * model(batch)`` for each batch, without TFCE maps.

    Parameters
    ----------
    model : PermutedT
        Gives the t maps of a batch of row orders.
    batches : list of ndarray of int, each shape (n_batch, n_subjects)
        Row orders.
    sign : float
        -1 for ``controls>patients``, else 1.
    tested : ndarray of shape (n_voxels,)
    settings : BatchSettings

    Returns
    -------
    list of BatchSummary
    """
    # This runs in a joblib or Dask worker: Dask may hand the arrays inside
    # the model and the settings over misaligned, which can change the last
    # bits of sums (rsxai.parallel.use_aligned_arrays). Realigned here, by the
    # function that computes on them, as a local run has them (no copy then).
    model, tested, settings = (with_aligned_arrays(x) for x in (model, tested, settings))
    summaries = []
    for batch in batches:
        summary = summarise_batch(sign * model(batch), tested, settings)
        summaries.append(
            BatchSummary(summary.max_t, summary.exceed_counts, summary.max_tfce, None)
        )
    return summaries
