"""The two-group GLM behind rsxai's group statistics: design, contrasts, permuted t maps.

Design
    ``intercept`` + ``group`` (1 = patient, 0 = control) + covariates. The
    group coefficient is the patient minus control mean (adjusted for the
    covariates), so its t equals that of FSL's intercept-free design (one
    indicator column per group, contrast ``[1, -1]``) and, without covariates,
    that of ``scipy.stats.ttest_ind(patients, controls, equal_var=True)``.
    Numeric covariates are demeaned; categorical ones (strings, categories,
    booleans) become one indicator column per level except the first.

Permutations (Freedman & Lane 1983, as ``randomise`` and nilearn do)
    The maps are reduced to the residuals of the nuisance model (intercept +
    covariates); each permutation reorders those residuals across subjects
    and refits the full model. Without covariates the nuisance model is the
    intercept alone, and this is exactly permuting the group labels.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from pandas.api import types as pdtypes

from rsxai.exceptions import InputError

#: Contrasts accepted by :func:`rsxai.stats.permutation_glm`.
CONTRASTS = ("patients>controls", "controls>patients", "two-sided")


def group_label_problems(groups: np.ndarray, n_subjects: int) -> list[str]:
    """What is wrong with the group labels (empty when nothing is)."""
    if groups.ndim != 1:
        return [f"groups must be 1D (one label per subject); got shape {groups.shape}."]
    if groups.size != n_subjects:
        return [
            f"groups has {groups.size} labels but maps has {n_subjects} rows "
            "(one per subject); give one group label per row of maps."
        ]
    values = set(np.unique(groups).tolist())
    if not values <= {0, 1}:
        return [
            "groups must hold 1 (patient) or 0 (control) for every subject; got values "
            f"{sorted(values - {0, 1}, key=str)}."
        ]
    if len(values) < 2:
        only = "patients (1)" if values == {1} else "controls (0)"
        return [
            f"groups has only {only}; a group comparison needs both 0 (control) and 1 (patient)."
        ]
    return []


def block_codes(blocks: np.ndarray | None, n_subjects: int) -> tuple[np.ndarray, list[str]]:
    """Exchangeability blocks as codes 0..n_blocks-1 (all 0 for None), and any problems."""
    codes = np.zeros(n_subjects, dtype=np.int64)
    if blocks is None:
        return codes, []
    raw = np.asarray(blocks)
    if raw.ndim != 1 or raw.size != n_subjects:
        return codes, [
            f"exchangeability_blocks must have one label per subject ({n_subjects}); "
            f"got shape {raw.shape}."
        ]
    if pd.isna(raw).any():
        return codes, ["exchangeability_blocks has missing labels; give every subject one."]
    return np.unique(raw, return_inverse=True)[1].ravel(), []


def group_design(
    groups: np.ndarray, covariates: pd.DataFrame | np.ndarray | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Design matrix of a two-group comparison with optional covariates.

    Parameters
    ----------
    groups : ndarray of shape (n_subjects,)
        1 for patients, 0 for controls (already validated).
    covariates : DataFrame (or 2D array) with n_subjects rows, or None
        Rows in the order of ``groups``. Numeric columns are demeaned,
        other columns (strings, categories, booleans) are dummy-coded with
        the first level (in sorted order, or the categorical's order) dropped.

    Returns
    -------
    design : ndarray of shape (n_subjects, n_columns)
        Columns ``intercept``, ``group``, then the covariates.
    columns : tuple of str
        Column names; a dummy column is named ``"<column>[<level>]"``.

    Raises
    ------
    InputError
        Covariates with the wrong number of rows, a covariate with missing
        values, a constant one, or covariates that make the design
        rank-deficient (e.g. one equal to the group labels).
    """
    groups = np.asarray(groups, dtype=np.float64)
    n_subjects = groups.size
    if covariates is not None and not isinstance(covariates, pd.DataFrame):
        covariates = pd.DataFrame(np.asarray(covariates))
    if covariates is not None and len(covariates) != n_subjects:
        raise InputError(
            f"covariates has {len(covariates)} rows but maps has {n_subjects} rows "
            "(one per subject); give one covariate row per subject, in the same order."
        )
    blocks = [np.ones((n_subjects, 1)), groups[:, None]]
    names = ["intercept", "group"]
    problems = []
    if covariates is not None:
        for column in covariates.columns:
            values = covariates[column]
            missing = values.isna().to_numpy()
            if missing.any():
                rows = np.flatnonzero(missing)
                problems.append(
                    f"covariates column {column!r} has {rows.size} missing value(s) "
                    f"(rows {rows[:10].tolist()}); fill them in or leave those subjects out."
                )
                continue
            if pdtypes.is_bool_dtype(values) or not pdtypes.is_numeric_dtype(values):
                levels = (
                    list(values.cat.categories)
                    if isinstance(values.dtype, pd.CategoricalDtype)
                    else sorted(values.unique(), key=str)
                )
                levels = [level for level in levels if (values == level).any()]
                if len(levels) < 2:
                    problems.append(
                        f"covariates column {column!r} has a single level ({levels[0]!r}); "
                        "it says nothing a model could use: drop it."
                    )
                    continue
                for level in levels[1:]:
                    blocks.append((values == level).to_numpy(dtype=np.float64)[:, None])
                    names.append(f"{column}[{level}]")
            else:
                numeric = values.to_numpy(dtype=np.float64)
                if not np.all(np.isfinite(numeric)):
                    problems.append(
                        f"covariates column {column!r} has infinite values; give finite numbers."
                    )
                    continue
                if np.ptp(numeric) == 0:
                    problems.append(
                        f"covariates column {column!r} is constant ({numeric[0]:g}); "
                        "the intercept already models it: drop it."
                    )
                    continue
                blocks.append((numeric - numeric.mean())[:, None])
                names.append(str(column))
    design = np.hstack(blocks)
    if not problems:
        problems += _rank_problems(design, names)
    if problems:
        raise InputError(problems)
    return design, tuple(names)


def _rank_problems(design: np.ndarray, names: list[str]) -> list[str]:
    """Name each column that is a linear combination of the columns before it."""
    problems = []
    kept: list[int] = []
    for j in range(design.shape[1]):
        trial = [*kept, j]
        if np.linalg.matrix_rank(design[:, trial]) < len(trial):
            problems.append(
                f"covariates column {names[j]!r} is a linear combination of "
                f"{', '.join(names[k] for k in kept)}; the group effect cannot be "
                "separated from it: drop or recode it."
            )
        else:
            kept.append(j)
    n_subjects, n_columns = design.shape
    if not problems and n_subjects <= n_columns:
        problems.append(
            f"covariates: {n_subjects} subjects cannot fit a model of {n_columns} columns "
            f"({', '.join(names)}); at least {n_columns + 1} subjects are needed."
        )
    return problems


def contrast_vector(contrast: str, columns: tuple[str, ...]) -> np.ndarray:
    """The contrast over the design columns (``two-sided`` tests ``patients>controls``).

    Returns
    -------
    contrast : ndarray of shape (n_columns,)
    """
    vector = np.zeros(len(columns))
    vector[columns.index("group")] = -1.0 if contrast == "controls>patients" else 1.0
    return vector


class PermutedT:
    """t of the group column for a batch of Freedman–Lane permutations.

    The nuisance columns (all but ``group``) get an orthonormal basis ``Q``;
    the maps become residuals ``R`` of that reduced model; ``q`` is the group
    column orthogonalised against ``Q`` and scaled to unit length. For a
    permutation ``p`` of the residuals' rows, the full model's group t is
    ``q · R[p] / sqrt(rss / dof)`` with
    ``rss = |R|^2 - |Q' R[p]|^2 - (q · R[p])^2``. ``q · R[p]`` is
    ``q[p^-1] · R``, so a batch of permutations is one matrix product
    (one for each covariate, too), and nothing is refitted.

    Parameters
    ----------
    maps : ndarray of shape (n_subjects, n_voxels)
        One network's subject maps.
    design : ndarray of shape (n_subjects, n_columns)
        From :func:`group_design`; column 0 is the intercept, 1 the group.
    """

    def __init__(self, maps: np.ndarray, design: np.ndarray):
        nuisance = np.delete(design, 1, axis=1)
        basis, _ = np.linalg.qr(nuisance)
        maps = np.asarray(maps, dtype=np.float64)
        self.residuals = maps - basis @ (basis.T @ maps)
        group = design[:, 1] - basis @ (basis.T @ design[:, 1])
        # basis[:, 0] spans the intercept, against which the residuals are
        # already orthogonal and which no permutation changes: it is left out.
        self.directions = np.vstack([group / np.linalg.norm(group), basis[:, 1:].T])
        self.sum_of_squares = np.einsum("ij,ij->j", self.residuals, self.residuals)
        self.dof = design.shape[0] - design.shape[1]
        # No variance left once the nuisance model is removed (a voxel equal in
        # every subject, to rounding): t is 0/0 there and is set to 0.
        scale = np.abs(maps).max(axis=0)
        self.constant_voxels = self.sum_of_squares <= maps.shape[0] * (1e-10 * scale) ** 2

    def __call__(self, permutations: np.ndarray) -> np.ndarray:
        """t maps for permutations given as row orders.

        Parameters
        ----------
        permutations : ndarray of int, shape (n_permutations, n_subjects)
            Row ``i`` of a permuted data set is subject ``permutations[k, i]``.

        Returns
        -------
        t : ndarray of float64, shape (n_permutations, n_voxels)
            Zero where the maps have no variance left after the nuisance model.
        """
        n_batch, n_subjects = permutations.shape
        inverse = np.argsort(permutations, axis=1)
        weights = self.directions[:, inverse].reshape(-1, n_subjects)
        projections = (weights @ self.residuals).reshape(len(self.directions), n_batch, -1)
        effect = projections[0]
        rss = self.sum_of_squares - np.einsum("kbv,kbv->bv", projections, projections)
        # Rounding can take the rss of a (numerically) perfect fit below zero.
        rss = np.maximum(rss, 1e-12 * self.sum_of_squares)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = effect / np.sqrt(rss / self.dof)
        t[:, self.constant_voxels] = 0.0
        return t


def draw_permutations(
    n_permutations: int, blocks: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Row orders for a permutation test, the identity first, within blocks.

    Parameters
    ----------
    n_permutations : int
        Number of rows, the identity included.
    blocks : ndarray of shape (n_subjects,)
        Exchangeability block of each subject; a subject only ever takes the
        place of a subject of its own block.
    rng : numpy.random.Generator

    Returns
    -------
    permutations : ndarray of int32, shape (n_permutations, n_subjects)
    """
    n_subjects = blocks.size
    permutations = np.tile(np.arange(n_subjects, dtype=np.int32), (n_permutations, 1))
    for block in np.unique(blocks):
        members = np.flatnonzero(blocks == block)
        keys = rng.random((n_permutations - 1, members.size))
        permutations[1:, members] = members[np.argsort(keys, axis=1)]
    return permutations


def warn_if_few_permutations(
    n_permutations: int, groups: np.ndarray, blocks: np.ndarray, with_covariates: bool
) -> None:
    """Warn when the design allows fewer different permuted data sets than asked for.

    Without covariates, permutations that give the same group labels give the
    same t map, so only label arrangements within blocks count; with
    covariates (Freedman–Lane) every reordering of the residuals does.
    """
    distinct = 1
    for block in np.unique(blocks):
        in_block = groups[blocks == block]
        if with_covariates:
            distinct *= math.factorial(in_block.size)
        else:
            distinct *= math.comb(in_block.size, int(in_block.sum()))
        if distinct >= n_permutations:
            return
    warnings.warn(
        f"n_permutations={n_permutations} but this design has only {distinct} distinct "
        "permutation(s); permutations repeat and p-values cannot go below "
        f"1/{distinct}. Ask for fewer permutations or more subjects.",
        stacklevel=3,
    )
