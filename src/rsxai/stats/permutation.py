"""Group statistics on one network's subject maps: GLM, permutations, TFCE, FWE.

:func:`permutation_glm` does what ``randomise -T`` does for a two-group
comparison (and what nilearn's ``permuted_ols(..., tfce=True)`` does), on
plain arrays, fast enough for 5,000 permutations in well under a minute.

Conventions (each is ``randomise``'s unless said otherwise)

- ``n_permutations`` counts the unpermuted data: permutation 0 is the
  identity, so the null distributions hold ``n_permutations`` values, the first
  being the observed maximum, and a p-value is the fraction of them at least
  as large as the observed value (never below ``1 / n_permutations``).
  nilearn's ``n_perm=N`` draws N permutations and adds the observed data to
  the count, i.e. equals ``n_permutations=N + 1`` here.
- Permutations are random (with repetition possible), not exhaustive; a
  warning says so when the design has fewer distinct permutations than asked.
- Design and permutation scheme: see :mod:`rsxai.stats.design` (intercept +
  patient indicator; Freedman–Lane, which is label permutation without
  covariates). With ``exchangeability_blocks`` rows are permuted only within
  their block.
- TFCE: see :mod:`rsxai.stats.tfce`; the height step is fixed for every permutation
  from the unpermuted statistic (its maximum / 100: of t one-sided, of ``|t|``
  two-sided; :func:`rsxai.stats.tfce.default_step_for`) as ``randomise`` does
  (nilearn instead takes each permuted map's own maximum / 100).
- ``two-sided``: the t map is that of ``patients>controls``; voxel inference
  uses ``|t|`` (with one contrast column that is the F-test, F = t^2), and TFCE
  enhances positive and negative clusters separately, with the sign of t, and
  is tested on ``|TFCE|`` (as nilearn's ``two_sided_test=True``). Enhancing
  ``|t|`` or F in one map, as ``randomise -f -T`` does, would join a positive
  and a negative cluster that touch.

The permutations are run in batches whose null maxima, exceedance counts and
FWE p-values are computed by :mod:`rsxai.stats.max_statistic`; ``fwe_p_values``
stays importable from here. The FWE p-values are over the voxels of one contrast;
:func:`rsxai.stats.fwe_over_contrasts` corrects over several contrasts of the same
maps (as ``randomise --corrcon``), which the stats stage does.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass
from typing import Any

import joblib
import numpy as np
import pandas as pd

from rsxai.exceptions import InputError
from rsxai.grid import Grid
from rsxai.progress import progress_bar
from rsxai.stats.design import (
    CONTRASTS,
    PermutedT,
    block_codes,
    contrast_vector,
    draw_permutations,
    group_design,
    group_label_problems,
    warn_if_few_permutations,
)
from rsxai.stats.max_statistic import (
    BATCH_SIZE,
    BatchSettings,
    fwe_p_values,
    run_batches,
    summarise_batch,
)
from rsxai.stats.tfce import CONNECTIVITIES, default_step_for, neighbour_table


@dataclass(frozen=True)
class PermutationGLMResult:
    """Maps and null distributions of :func:`permutation_glm` (arrays are read-only).

    Attributes
    ----------
    t : ndarray of shape (n_voxels,)
        t of the contrast (of ``patients>controls`` when ``two-sided``).
    tfce : ndarray of shape (n_voxels,) or None
        TFCE of ``t`` (signed when ``two-sided``); None without TFCE.
    p_uncorrected : ndarray of shape (n_voxels,)
        Voxelwise permutation p of ``t`` (of ``|t|`` when ``two-sided``).
    p_fwe_t : ndarray of shape (n_voxels,)
        Family-wise error corrected p of ``t``, from ``null_max_t``.
    p_fwe_tfce : ndarray of shape (n_voxels,) or None
        Family-wise error corrected p of TFCE, from ``null_max_tfce``.
    null_max_t, null_max_tfce : ndarray of shape (n_permutations,) or None
        Maximum over voxels of the tested statistic in each permutation
        (the first one is the unpermuted data), in the order drawn.
    n_permutations : int
        Including the unpermuted data.
    permutations : ndarray of int, shape (n_permutations, n_subjects)
        Row orders applied to the reduced-model residuals; row 0 is the identity.
    design_matrix : ndarray of shape (n_subjects, n_columns)
    design_columns : tuple of str
    contrast : ndarray of shape (n_columns,)
    contrast_name : str
    dof : int
        Residual degrees of freedom.
    tfce_dh : float or None
        The TFCE height step used for every permutation.
    permutation_scheme : str
        ``"group labels"`` (no covariates) or ``"Freedman-Lane"``.
    """

    t: np.ndarray
    tfce: np.ndarray | None
    p_uncorrected: np.ndarray
    p_fwe_t: np.ndarray
    p_fwe_tfce: np.ndarray | None
    null_max_t: np.ndarray
    null_max_tfce: np.ndarray | None
    n_permutations: int
    permutations: np.ndarray
    design_matrix: np.ndarray
    design_columns: tuple[str, ...]
    contrast: np.ndarray
    contrast_name: str
    dof: int
    tfce_dh: float | None
    permutation_scheme: str


def permutation_glm(
    maps: np.ndarray,
    groups: np.ndarray,
    grid: Grid,
    *,
    covariates: pd.DataFrame | None = None,
    contrast: str = "patients>controls",
    n_permutations: int = 5000,
    tfce: bool = True,
    tfce_h: float = 2.0,
    tfce_e: float = 0.5,
    tfce_connectivity: int = 6,
    tfce_dh: float | None = None,
    exchangeability_blocks: np.ndarray | None = None,
    random_state: int | np.random.Generator | None = 0,
    n_jobs: int = 1,
    progress: bool = False,
) -> PermutationGLMResult:
    """Two-group GLM with permutation inference, TFCE and FWE correction.

    Parameters
    ----------
    maps : ndarray of shape (n_subjects, n_voxels)
        One network's subject maps (dual regression stage 2) on ``grid``.
    groups : ndarray of shape (n_subjects,)
        1 for patients, 0 for controls.
    grid : Grid
        Places the voxels in 3D, for TFCE.
    covariates : DataFrame with n_subjects rows, optional
        Nuisance variables, rows in subject order; numeric columns are
        demeaned, categorical ones dummy-coded (first level dropped).
    contrast : {"patients>controls", "controls>patients", "two-sided"}
        One-sided t-tests, or a two-sided test (see the module notes).
    n_permutations : int, default=5000
        Number of permutations, the unpermuted data included.
    tfce : bool, default=True
        Compute TFCE and its FWE-corrected p.
    tfce_h, tfce_e : float, default=2.0, 0.5
        TFCE height and extent exponents (FSL's defaults).
    tfce_connectivity : {6, 18, 26}, default=6
        TFCE neighbourhood (``randomise``'s default is 6).
    tfce_dh : float or None, default=None
        TFCE height step; None takes the unpermuted statistic's maximum / 100: of t
        for a one-sided test, of ``|t|`` for a two-sided one (and for a one-sided
        map with no t above 0; :func:`rsxai.stats.tfce.default_step_for`).
    exchangeability_blocks : ndarray of shape (n_subjects,), optional
        Block label of each subject (e.g. site); subjects are permuted only
        within their block.
    random_state : int, Generator or None, default=0
        Seeds the permutations, all drawn before any work is dispatched.
    n_jobs : int, default=1
        Worker processes (joblib convention: -1 for all cores). The result
        does not depend on it.
    progress : bool, default=False
        Show a progress bar.

    Returns
    -------
    PermutationGLMResult
    """
    # locals() holds exactly the arguments here: nothing else is bound yet.
    maps, groups, blocks = _check_inputs(locals())
    design, columns = group_design(groups, covariates)
    model = PermutedT(maps, design)
    if model.constant_voxels.any():
        warnings.warn(
            f"{int(model.constant_voxels.sum())} voxel(s) have no variance across subjects "
            "once the nuisance model is removed (e.g. the same value in every subject); "
            "their t and TFCE are set to 0.",
            stacklevel=2,
        )
    with_covariates = len(columns) > 2
    rng = np.random.default_rng(random_state)
    permutations = draw_permutations(n_permutations, blocks, rng)
    warn_if_few_permutations(n_permutations, groups, blocks, with_covariates)

    sign = -1.0 if contrast == "controls>patients" else 1.0
    two_sided = contrast == "two-sided"
    neighbours = neighbour_table(grid.mask, tfce_connectivity) if tfce else None
    batches = [
        permutations[start : start + BATCH_SIZE] for start in range(0, n_permutations, BATCH_SIZE)
    ]
    # The first batch starts with the identity: it gives the observed maps
    # (through the very arithmetic of every permutation, so the identity's
    # maxima and counts tie with the observed values exactly) and the TFCE step.
    first_t = sign * model(batches[0])
    observed_t = first_t[0]
    tested = np.abs(observed_t) if two_sided else observed_t
    dh = None
    if tfce:
        dh = float(tfce_dh) if tfce_dh is not None else default_step_for(observed_t, two_sided)
    settings = BatchSettings(two_sided, tfce, neighbours, dh, tfce_h, tfce_e)
    first = summarise_batch(first_t, tested, settings)
    observed_tfce = first.tfce_first if tfce else None

    bar = progress_bar(total=n_permutations, enabled=progress, desc="permutations", unit="perm")
    bar.update(len(batches[0]))
    summaries = [first]
    rest = batches[1:]
    if rest:
        n_workers = min(joblib.effective_n_jobs(n_jobs), len(rest))
        tasks = np.array_split(np.arange(len(rest)), max(1, min(len(rest), 4 * n_workers)))
        runner = joblib.Parallel(n_jobs=n_workers, return_as="generator")
        results = runner(
            joblib.delayed(run_batches)(model, [rest[i] for i in task], sign, tested, settings)
            for task in tasks
            if task.size
        )
        for task_summaries in results:
            summaries.extend(task_summaries)
            bar.update(sum(s.max_t.size for s in task_summaries))
    bar.close()

    null_max_t = np.concatenate([s.max_t for s in summaries])
    counts = np.sum([s.exceed_counts for s in summaries], axis=0)
    null_max_tfce = np.concatenate([s.max_tfce for s in summaries]) if tfce else None
    tested_tfce = None
    if tfce:
        tested_tfce = np.abs(observed_tfce) if two_sided else observed_tfce
    return PermutationGLMResult(
        t=_frozen(observed_t),
        tfce=_frozen(observed_tfce),
        p_uncorrected=_frozen(counts / n_permutations),
        p_fwe_t=_frozen(fwe_p_values(tested, null_max_t)),
        p_fwe_tfce=_frozen(fwe_p_values(tested_tfce, null_max_tfce) if tfce else None),
        null_max_t=_frozen(null_max_t),
        null_max_tfce=_frozen(null_max_tfce),
        n_permutations=int(n_permutations),
        permutations=_frozen(permutations),
        design_matrix=_frozen(design),
        design_columns=columns,
        contrast=_frozen(contrast_vector(contrast, columns)),
        contrast_name=contrast,
        dof=int(model.dof),
        tfce_dh=dh,
        permutation_scheme="Freedman-Lane" if with_covariates else "group labels",
    )


def _check_inputs(arguments: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked maps, groups (float) and block codes from :func:`permutation_glm`'s arguments.

    ``arguments`` maps each parameter name of :func:`permutation_glm` to its
    value. Raises one :class:`~rsxai.exceptions.InputError` listing every
    problem.
    """
    maps, groups, grid = arguments["maps"], arguments["groups"], arguments["grid"]
    contrast, n_permutations = arguments["contrast"], arguments["n_permutations"]
    tfce_h, tfce_e, tfce_dh = arguments["tfce_h"], arguments["tfce_e"], arguments["tfce_dh"]
    tfce_connectivity, n_jobs = arguments["tfce_connectivity"], arguments["n_jobs"]
    exchangeability_blocks = arguments["exchangeability_blocks"]
    problems = []
    if not isinstance(grid, Grid):
        raise InputError(f"grid must be an rsxai.grid.Grid; got {type(grid).__name__}.")
    maps = np.asarray(maps, dtype=np.float64)
    groups_array = np.asarray(groups)
    if maps.ndim != 2 or maps.shape[1] != grid.n_voxels:
        problems.append(
            f"maps must have shape (n_subjects, n_voxels) with n_voxels={grid.n_voxels} "
            f"(the voxels of grid); got shape {maps.shape}."
        )
    elif not np.all(np.isfinite(maps)):
        problems.append("maps contains NaN or infinite values; give finite subject maps.")
    if maps.ndim == 2:
        problems += group_label_problems(groups_array, maps.shape[0])
    if contrast not in CONTRASTS:
        problems.append(
            f"contrast must be one of {', '.join(repr(c) for c in CONTRASTS)}; got {contrast!r}."
        )
    if (
        not isinstance(n_permutations, numbers.Integral)
        or isinstance(n_permutations, bool)
        or n_permutations < 1
    ):
        problems.append(
            "n_permutations must be an integer >= 1 (the unpermuted data count as the "
            f"first); got {n_permutations!r}."
        )
    for name, value in (("tfce_h", tfce_h), ("tfce_e", tfce_e)):
        if not isinstance(value, numbers.Real) or not np.isfinite(value) or value <= 0:
            problems.append(f"{name} must be a positive number; got {value!r}.")
    if tfce_connectivity not in CONNECTIVITIES:
        problems.append(
            f"tfce_connectivity must be one of {sorted(CONNECTIVITIES)} (3D neighbours "
            f"sharing a face, an edge or a corner); got {tfce_connectivity!r}."
        )
    if tfce_dh is not None and (
        not isinstance(tfce_dh, numbers.Real) or not np.isfinite(tfce_dh) or tfce_dh <= 0
    ):
        problems.append(
            f"tfce_dh must be a positive number or None (the maximum / 100); got {tfce_dh!r}."
        )
    if not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        problems.append(f"n_jobs must be a non-zero integer (-1 for all cores); got {n_jobs!r}.")
    blocks, block_problems = block_codes(exchangeability_blocks, groups_array.size)
    problems += block_problems
    if problems:
        raise InputError(problems)
    return maps, groups_array.astype(np.float64), blocks


def _frozen(array: np.ndarray | None) -> np.ndarray | None:
    if array is None:
        return None
    array = np.asarray(array)
    array.setflags(write=False)
    return array
