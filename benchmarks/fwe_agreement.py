"""Do two permutation tests' FWE-corrected p-values agree within Monte-Carlo error?

A permutation p-value estimated from N relabellings (the unpermuted one
counted, as randomise and both rsxai and nilearn do) is a binomial
proportion: its Monte-Carlo standard error is ``sqrt(p (1 - p) / N)``,
evaluated at the estimate itself (so it is 0 at p = 1 and about 1/N at the
smallest possible p = 1/N, where it understates the error of a p that could
be far smaller). Two independent estimates of the same p agree when they
differ by at most 2 combined standard errors, ``2 sqrt(SE_1^2 + SE_2^2)``.
Within one map the voxels' errors are not independent: every FWE p comes
from the same null distribution of the maximum.
Used by :mod:`benchmarks.permutation_stats` at the planted peak voxel and
over the planted region.
"""

from __future__ import annotations

import numpy as np

#: Agreement: difference within this many combined standard errors.
N_STANDARD_ERRORS = 2.0


def monte_carlo_se(p: np.ndarray | float, n: int) -> np.ndarray:
    """Binomial Monte-Carlo standard error ``sqrt(p (1 - p) / n)`` of permutation p-values."""
    p = np.asarray(p, dtype=float)
    return np.sqrt(p * (1.0 - p) / n)


def _comparison(p_ours: float, n_ours: int, p_theirs: float, n_theirs: int) -> dict:
    se_ours, se_theirs = (
        float(monte_carlo_se(p_ours, n_ours)),
        float(monte_carlo_se(p_theirs, n_theirs)),
    )
    combined = np.hypot(se_ours, se_theirs)
    difference = p_ours - p_theirs
    return {
        "rsxai_p": float(p_ours),
        "rsxai_se": se_ours,
        "nilearn_p": float(p_theirs),
        "nilearn_se": se_theirs,
        "difference": float(difference),
        "combined_se": float(combined),
        "agree": bool(abs(difference) <= N_STANDARD_ERRORS * combined),
    }


def fwe_agreement(
    p_ours: np.ndarray,
    n_ours: int,
    p_theirs: np.ndarray,
    n_theirs: int,
    profile: np.ndarray,
    *,
    region_level: float = 0.5,
) -> dict:
    """Compare two FWE-corrected p maps at the planted peak and over the planted region.

    Parameters
    ----------
    p_ours, p_theirs : ndarray of shape (n_voxels,)
        FWE-corrected p-values of rsxai and of nilearn.
    n_ours, n_theirs : int
        Relabellings behind each, the unpermuted one included.
    profile : ndarray of shape (n_voxels,)
        The planted effect divided by its peak (1 at the peak voxel).
    region_level : float
        The planted region is where ``profile > region_level``.

    Returns
    -------
    dict
        ``rows``: one comparison (dict of p, SE, difference, combined SE,
        agree) for the peak voxel, the region's smallest p of each and the
        region's median p of each; ``region_voxels``; ``region_agree``: the
        share of region voxels whose two p agree.
    """
    region = profile > region_level
    peak = int(np.argmax(profile))
    ours, theirs = p_ours[region], p_theirs[region]
    differences = np.abs(ours - theirs)
    combined = np.hypot(monte_carlo_se(ours, n_ours), monte_carlo_se(theirs, n_theirs))
    return {
        "n_rsxai": int(n_ours),
        "n_nilearn": int(n_theirs),
        "region_voxels": int(region.sum()),
        "rows": {
            "planted peak voxel": _comparison(p_ours[peak], n_ours, p_theirs[peak], n_theirs),
            "region, smallest p": _comparison(ours.min(), n_ours, theirs.min(), n_theirs),
            "region, median p": _comparison(
                float(np.median(ours)), n_ours, float(np.median(theirs)), n_theirs
            ),
        },
        "region_agree": float(np.mean(differences <= N_STANDARD_ERRORS * combined)),
    }


def agreement_markdown(agreement: dict) -> list[str]:
    """Markdown lines: the table of :func:`fwe_agreement`'s rows and the region's share."""
    n_ours, n_theirs = agreement["n_rsxai"], agreement["n_nilearn"]
    floor = 1.0 / n_theirs
    floor_se = float(monte_carlo_se(floor, n_theirs))
    lines = [
        f"FWE-corrected TFCE p with its binomial Monte-Carlo standard error sqrt(p(1-p)/N) "
        f"(rsxai N = {n_ours:,}, nilearn N = {n_theirs:,}, the unpermuted labelling counted); "
        f"'agree' = difference within {N_STANDARD_ERRORS:g} combined SE. nilearn's smallest "
        f"possible p is 1/{n_theirs:,} = {floor:.4f} with SE {floor_se:.4f} "
        f"there (rsxai's: 1/{n_ours:,} = {1.0 / n_ours:.4f}): where nilearn's p is at or near "
        "its floor, its SE dominates and agreement says little. "
        "The median row takes each map's own median over the planted region "
        f"({agreement['region_voxels']} voxels), with the SE of one voxel's p.",
        "",
        "| where | rsxai p (SE) | nilearn p (SE) | difference | 2 x combined SE | agree |",
        "| --- | ---: | ---: | ---: | ---: | :---: |",
    ]
    for where, row in agreement["rows"].items():
        lines.append(
            f"| {where} | {row['rsxai_p']:.4f} ({row['rsxai_se']:.4f}) | "
            f"{row['nilearn_p']:.4f} ({row['nilearn_se']:.4f}) | {row['difference']:+.4f} | "
            f"{N_STANDARD_ERRORS * row['combined_se']:.4f} | {'yes' if row['agree'] else 'no'} |"
        )
    lines += [
        "",
        f"Over the planted region, {agreement['region_agree']:.0%} of the voxels' two p-values "
        f"agree within {N_STANDARD_ERRORS:g} combined SE. This share is not a count of "
        "independent tests and need not be near 95 %: every voxel's FWE p comes from the same "
        "null distribution of the maximum, so one run's Monte-Carlo error moves all its "
        "p-values together; and the two TFCE implementations differ slightly on purpose (see "
        "above), so a small systematic difference is possible too. One run of each cannot "
        "tell the two apart.",
        "",
    ]
    return lines
