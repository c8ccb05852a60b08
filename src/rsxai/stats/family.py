"""FWE over several contrasts of one network: the maximum statistic over voxels and contrasts.

:func:`rsxai.stats.permutation_glm` controls the family-wise error over the
voxels of one contrast. Two one-sided contrasts (``patients>controls`` and
``controls>patients``, the stats stage's default), each thresholded at 0.05,
give a false positive in either with probability close to 0.10.
:func:`fwe_over_contrasts` corrects over the contrasts too, as ``randomise
--corrcon`` does: every permutation's null maximum is the largest of its
maxima over the contrasts, and each contrast's FWE p is the fraction of those
family maxima at least as large as its observed statistic. That is valid
because the contrasts were computed under the very same permutations (the
same seed, blocks and number of permutations draw the same row orders,
:func:`rsxai.stats.draw_permutations`); it is checked.

TFCE maps of different contrasts have their own height step ``dh`` (each the
unpermuted map's maximum / 100), and the TFCE sum, not multiplied by ``dh``
(:mod:`rsxai.stats.tfce`), grows as ``1 / dh``: compared as they are, the
contrast with the smaller step (the one without an effect, typically) would
set every family maximum and swamp the other. They are compared as
``dh * TFCE``, the approximation of the TFCE integral, which does not depend
on the step. Multiplying a map and its null maxima by the same positive
number changes none of its own p-values, so a single contrast keeps exactly
the p-values of :func:`rsxai.stats.permutation_glm`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rsxai.exceptions import InputError
from rsxai.stats.max_statistic import fwe_p_values
from rsxai.stats.permutation import PermutationGLMResult


@dataclass(frozen=True)
class ContrastFamilyFWE:
    """FWE p-values corrected over the voxels and the contrasts of one network.

    Attributes
    ----------
    contrasts : tuple of str
        The contrasts of the family, in the order given.
    p_fwe_t : dict of str to ndarray of shape (n_voxels,)
        Per contrast, FWE p of its tested t (``|t|`` when two-sided) against
        ``null_max_t``.
    p_fwe_tfce : dict of str to ndarray of shape (n_voxels,), or None
        Per contrast, FWE p of its tested TFCE against ``null_max_tfce``;
        None without TFCE.
    null_max_t : ndarray of shape (n_permutations,)
        Per permutation, the maximum over voxels and contrasts of the tested t.
    null_max_tfce : ndarray of shape (n_permutations,) or None
        Per permutation, the maximum over voxels and contrasts of ``dh * TFCE``.
    """

    contrasts: tuple[str, ...]
    p_fwe_t: dict[str, np.ndarray]
    p_fwe_tfce: dict[str, np.ndarray] | None
    null_max_t: np.ndarray
    null_max_tfce: np.ndarray | None

    @property
    def n_contrasts(self) -> int:
        """Number of contrasts corrected over."""
        return len(self.contrasts)


def fwe_over_contrasts(results: Mapping[str, PermutationGLMResult]) -> ContrastFamilyFWE:
    """Family-wise error p-values over every voxel and contrast of one network.

    Parameters
    ----------
    results : mapping of str to PermutationGLMResult
        One :func:`rsxai.stats.permutation_glm` result per contrast, of the same
        maps, all with the same permutations, with TFCE in all or in none.

    Returns
    -------
    ContrastFamilyFWE

    Raises
    ------
    InputError
        No result, results computed under different permutations, or TFCE in
        some results only.
    """
    if not results:
        raise InputError("results must hold at least one contrast's permutation_glm result.")
    contrasts = tuple(results)
    first = results[contrasts[0]]
    problems = []
    for contrast in contrasts[1:]:
        if not np.array_equal(results[contrast].permutations, first.permutations):
            problems.append(
                f"contrast {contrast!r} was computed under other permutations than "
                f"{contrasts[0]!r}; a maximum over contrasts needs the same permutations for "
                "every contrast: give permutation_glm the same n_permutations, "
                "exchangeability_blocks and an integer random_state."
            )
    with_tfce = [results[c].tfce is not None for c in contrasts]
    if any(with_tfce) and not all(with_tfce):
        problems.append(
            "TFCE was computed for "
            f"{', '.join(repr(c) for c, w in zip(contrasts, with_tfce, strict=True) if w)} "
            "only; run every contrast with tfce=True or every one with tfce=False."
        )
    if problems:
        raise InputError(problems)

    tested_t = {c: _tested(results[c].t, c) for c in contrasts}
    null_max_t = np.max([results[c].null_max_t for c in contrasts], axis=0)
    if len(contrasts) == 1:
        # The result's own p-values, to the last bit.
        p_fwe_t = {contrasts[0]: first.p_fwe_t}
    else:
        p_fwe_t = {c: _frozen(fwe_p_values(tested_t[c], null_max_t)) for c in contrasts}
    p_fwe_tfce = null_max_tfce = None
    if all(with_tfce):
        scale = {c: 1.0 if len(contrasts) == 1 else results[c].tfce_dh for c in contrasts}
        null_max_tfce = np.max([scale[c] * results[c].null_max_tfce for c in contrasts], axis=0)
        if len(contrasts) == 1:
            p_fwe_tfce = {contrasts[0]: first.p_fwe_tfce}
        else:
            p_fwe_tfce = {
                c: _frozen(fwe_p_values(scale[c] * _tested(results[c].tfce, c), null_max_tfce))
                for c in contrasts
            }
    return ContrastFamilyFWE(
        contrasts=contrasts,
        p_fwe_t=p_fwe_t,
        p_fwe_tfce=p_fwe_tfce,
        null_max_t=_frozen(null_max_t),
        null_max_tfce=_frozen(null_max_tfce),
    )


def _tested(values: np.ndarray, contrast: str) -> np.ndarray:
    """The statistic a contrast is tested on: ``|values|`` two-sided, else as signed."""
    return np.abs(values) if contrast == "two-sided" else values


def _frozen(array: np.ndarray | None) -> np.ndarray | None:
    if array is None:
        return None
    array = np.asarray(array)
    array.setflags(write=False)
    return array
