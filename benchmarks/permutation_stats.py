"""Permutation GLM with TFCE: rsxai's ``permutation_glm`` vs nilearn's ``permuted_ols``.

60 subject maps (30 patients, 30 controls) on the MNI brain mask: smooth
Gaussian noise (white noise smoothed with a Gaussian of ``NOISE_FWHM_MM``,
scaled to unit standard deviation) plus, in the patients, a smooth blob
(Gaussian profile of ``BLOB_FWHM_MM`` around ``BLOB_CENTRE_MM``, left
precentral gyrus) of ``EFFECT`` noise standard deviations at its peak. The
planted region is where the profile is above half its peak. Both test
``patients > controls`` (one-sided) with TFCE (H = 2, E = 0.5, 6-connectivity):

- rsxai: :func:`rsxai.stats.permutation_glm` (``n_permutations`` counts the
  unpermuted data, so 5,000 here is nilearn's ``n_perm=4999``), 5,000
  permutations with ``n_jobs=2`` and 1,000 with ``n_jobs=1``;
- nilearn: ``permuted_ols(groups, maps, model_intercept=True, n_perm=300,
  two_sided_test=False, tfce=True, masker=NiftiMasker(mask), n_jobs=1)``;
  its time for 5,000 is extrapolated linearly from the 300 (its cost is the
  permutations; the set-up is negligible next to them). 300 rather than
  100 (about 25 s more) to narrow its Monte-Carlo error; at 5,000 it would
  take ~10 min.

Agreement: largest absolute difference of the t maps; correlation over
voxels of the -log10 FWE-corrected TFCE p maps (nilearn's 300 permutations
cap its map at log10(301) = 2.5, rsxai's 5,000 at 3.7; the correlation is
also given with rsxai's map capped the same way); the FWE p-values at the
planted peak voxel and over the planted region, each with its binomial
Monte-Carlo standard error, and whether they agree within 2 combined
standard errors (:mod:`benchmarks.fwe_agreement`); and whether each finds the
planted region (some voxel of it at FWE p < 0.05) and nothing far from it
(no voxel where the profile is below 1 % of its peak). The two TFCE
implementations differ on purpose in two details (see :mod:`rsxai.stats`):
the height step (rsxai: fixed from the observed map; nilearn: each map's
own) and, at a map's peak voxel, ">" vs ">=", so TFCE values differ slightly.

Each run is a fresh process (:func:`benchmarks.measurement.run_in_child`),
one BLAS thread (the parallelism is the ``n_jobs`` workers); the data are
made in that process before the timing. Peak memory is the process's peak
resident size during the call (Linux's high-water mark is reset once the data
are made; imports and data count in it); with ``n_jobs=2`` rsxai's joblib
workers are other processes, whose peak resident sizes are read from
``/proc`` before they are shut down and reported as a sum (an upper bound on
what they held at once).

Also rsxai on the 2 mm mask (~230,000 voxels), 500 permutations, with
``n_jobs=2`` and ``n_jobs=1``: time and peak memory.

Run alone: ``python -m benchmarks.permutation_stats [--quick]``.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from benchmarks.fwe_agreement import agreement_markdown, fwe_agreement
from benchmarks.measurement import benchmark_parser, current_rss_mb, run_in_child, timed

N_PER_GROUP = 30
NOISE_FWHM_MM = 8.0
BLOB_FWHM_MM = 16.0
BLOB_CENTRE_MM = (-38.0, -22.0, 56.0)
EFFECT = 1.5  # peak group difference, in noise standard deviations
FWE_ALPHA = 0.05
FULL = {
    "voxel_size": 4.0,
    "rsxai_permutations": 5000,
    "rsxai_single_permutations": 1000,
    "nilearn_permutations": 300,
    "extrapolate_to": 5000,
    "fine_voxel_size": 2.0,
    "fine_permutations": 500,
}
QUICK = {
    "voxel_size": 8.0,
    "rsxai_permutations": 200,
    "rsxai_single_permutations": 100,
    "nilearn_permutations": 20,
    "extrapolate_to": 200,
    "fine_voxel_size": 6.0,
    "fine_permutations": 100,
}


def simulated_maps(voxel_size: float, seed: int = 0):
    """Maps (n_subjects, n_voxels) float32, groups (1 patient, 0 control), blob profile, grid.

    The profile, shape (n_voxels,), is the planted difference divided by its
    peak (1 at the centre).
    """
    from scipy.ndimage import gaussian_filter

    from rsxai.grid import Grid

    grid = Grid.mni(voxel_size)
    rng = np.random.default_rng(seed)
    groups = np.repeat([1.0, 0.0], N_PER_GROUP)
    sigma = NOISE_FWHM_MM / (2 * np.sqrt(2 * np.log(2))) / voxel_size
    maps = np.empty((groups.size, grid.n_voxels), dtype=np.float32)
    for row in range(groups.size):
        noise = gaussian_filter(rng.standard_normal(grid.shape), sigma)
        maps[row] = noise[grid.mask]
    maps /= maps.std()
    blob_sigma = BLOB_FWHM_MM / (2 * np.sqrt(2 * np.log(2)))
    distance2 = np.sum((grid.world_coordinates() - np.asarray(BLOB_CENTRE_MM)) ** 2, axis=1)
    profile = np.exp(-distance2 / (2 * blob_sigma**2))
    maps += (EFFECT * groups[:, None] * profile[None, :]).astype(np.float32)
    return maps, groups, profile, grid


def _worker_peak_rss_mb() -> float:
    """Sum of the peak resident sizes (``VmHWM``) of this process's descendants, in MiB."""
    total = 0.0
    pending = [os.getpid()]
    while pending:
        pid = pending.pop()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in children:
                pending.append(int(child))
                try:
                    for line in Path(f"/proc/{child}/status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            total += int(line.split()[1]) / 2**10
                except OSError:
                    pass
    return total


def _reset_peak_rss() -> None:
    """Restart this process's peak resident size (``VmHWM``) from its current size (Linux).

    So that the peak reported is that of the measured call, not of making
    the data (resampling the MNI mask briefly holds large arrays).
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        warnings.warn(
            "cannot reset the peak resident size: it includes making the data", stacklevel=2
        )


def run_rsxai(voxel_size: float, n_permutations: int, n_jobs: int, output: str | None) -> dict:
    """Child process: ``permutation_glm`` on the simulated maps; maps saved to ``output``."""
    from joblib.externals.loky import get_reusable_executor

    from rsxai.stats import permutation_glm

    maps, groups, _, grid = simulated_maps(voxel_size)
    _reset_peak_rss()
    rss_before = current_rss_mb()
    result, seconds = timed(
        lambda: permutation_glm(maps, groups, grid, n_permutations=n_permutations, n_jobs=n_jobs)
    )
    workers_mb = _worker_peak_rss_mb() if n_jobs != 1 else 0.0
    get_reusable_executor().shutdown(wait=True)
    if output is not None:
        np.savez(output, t=result.t, p_fwe_tfce=result.p_fwe_tfce)
    return {
        "seconds": seconds,
        "rss_before_mb": rss_before,
        "workers_peak_rss_mb": workers_mb,
        "n_voxels": grid.n_voxels,
        "n_permutations": n_permutations,
        "n_jobs": n_jobs,
    }


def run_nilearn(voxel_size: float, n_perm: int, output: str) -> dict:
    """Child process: nilearn ``permuted_ols`` with TFCE, one job; maps saved to ``output``."""
    from nilearn.maskers import NiftiMasker
    from nilearn.mass_univariate import permuted_ols

    maps, groups, _, grid = simulated_maps(voxel_size)
    masker = NiftiMasker(mask_img=grid.mask_img()).fit()
    maps = maps.astype(np.float64)  # what permuted_ols works in; made before the timing
    _reset_peak_rss()
    rss_before = current_rss_mb()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result, seconds = timed(
            lambda: permuted_ols(
                groups[:, None],
                maps,
                model_intercept=True,
                n_perm=n_perm,
                two_sided_test=False,
                random_state=0,
                n_jobs=1,
                masker=masker,
                tfce=True,
            )
        )
    np.savez(output, t=result["t"][0], logp_fwe_tfce=result["logp_max_tfce"][0])
    return {"seconds": seconds, "rss_before_mb": rss_before, "n_perm": n_perm}


def _detection(minus_log10_p: np.ndarray, profile: np.ndarray) -> dict:
    significant = minus_log10_p > -np.log10(FWE_ALPHA)
    region = profile > 0.5
    far = profile < 0.01
    return {
        "finds_region": bool(significant[region].any()),
        "fraction_of_region": float(significant[region].mean()),
        "significant_far_from_region": int(significant[far].sum()),
    }


def run(*, quick: bool = False) -> dict:
    """All runs, each in its own process; times, memory, ratios and agreement."""
    size = QUICK if quick else FULL
    voxel_size = size["voxel_size"]
    _, _, profile, _ = simulated_maps(voxel_size)
    with tempfile.TemporaryDirectory(prefix="rsxai-bench-stats-") as folder:
        ours_file = str(Path(folder) / "rsxai.npz")
        theirs_file = str(Path(folder) / "nilearn.npz")
        target = "benchmarks.permutation_stats:"
        ours = run_in_child(
            target + "run_rsxai",
            blas_threads=1,
            voxel_size=voxel_size,
            n_permutations=size["rsxai_permutations"],
            n_jobs=2,
            output=ours_file,
        )
        single = run_in_child(
            target + "run_rsxai",
            blas_threads=1,
            voxel_size=voxel_size,
            n_permutations=size["rsxai_single_permutations"],
            n_jobs=1,
            output=None,
        )
        theirs = run_in_child(
            target + "run_nilearn",
            blas_threads=1,
            voxel_size=voxel_size,
            n_perm=size["nilearn_permutations"],
            output=theirs_file,
        )
        fine = run_in_child(
            target + "run_rsxai",
            blas_threads=1,
            voxel_size=size["fine_voxel_size"],
            n_permutations=size["fine_permutations"],
            n_jobs=2,
            output=None,
        )
        fine_single = run_in_child(
            target + "run_rsxai",
            blas_threads=1,
            voxel_size=size["fine_voxel_size"],
            n_permutations=size["fine_permutations"],
            n_jobs=1,
            output=None,
        )
        with np.load(ours_file) as saved:
            ours_t, ours_p = saved["t"], saved["p_fwe_tfce"]
        with np.load(theirs_file) as saved:
            theirs_t, theirs_logp = saved["t"], saved["logp_fwe_tfce"]
    ours_logp = -np.log10(ours_p)
    capped = np.minimum(ours_logp, np.log10(size["nilearn_permutations"] + 1))
    for item in (ours, single, theirs, fine, fine_single):
        item["work_mb"] = item["peak_rss_mb"] - item["rss_before_mb"]
    # Per permutation: rsxai's count includes the unpermuted data, nilearn's does not.
    ours_single_per_perm = single["seconds"] / single["n_permutations"]
    theirs_per_perm = theirs["seconds"] / (theirs["n_perm"] + 1)
    return {
        "n_subjects": 2 * N_PER_GROUP,
        "voxel_size": voxel_size,
        "n_voxels": int(profile.size),
        "n_region_voxels": int(np.count_nonzero(profile > 0.5)),
        "rsxai": ours,
        "rsxai_single": single,
        "nilearn": theirs,
        "rsxai_fine": fine,
        "rsxai_fine_single": fine_single,
        "fine_voxel_size": size["fine_voxel_size"],
        "nilearn_extrapolated_seconds": theirs_per_perm * size["extrapolate_to"],
        "extrapolate_to": size["extrapolate_to"],
        "speed_ratio_per_permutation_n_jobs_1": theirs_per_perm / ours_single_per_perm,
        "max_abs_t_difference": float(np.max(np.abs(ours_t - theirs_t))),
        "max_abs_t": float(np.max(np.abs(theirs_t))),
        "logp_correlation": float(np.corrcoef(ours_logp, theirs_logp)[0, 1]),
        "logp_correlation_capped": float(np.corrcoef(capped, theirs_logp)[0, 1]),
        "fwe_agreement": fwe_agreement(
            ours_p,
            size["rsxai_permutations"],
            10.0**-theirs_logp,
            size["nilearn_permutations"] + 1,
            profile,
        ),
        "rsxai_detection": _detection(ours_logp, profile),
        "nilearn_detection": _detection(theirs_logp, profile),
    }


def _memory(item: dict) -> str:
    text = f"{item['peak_rss_mb']:.0f} ({item['work_mb']:.0f})"
    if item.get("workers_peak_rss_mb"):
        text += f" + workers {item['workers_peak_rss_mb']:.0f}"
    return text


def _found(detection: dict) -> str:
    return (
        f"{'yes' if detection['finds_region'] else 'no'} "
        f"({detection['fraction_of_region']:.0%} of it; "
        f"{detection['significant_far_from_region']} voxels far from it)"
    )


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section for :func:`run`'s result."""
    ours, single, theirs = result["rsxai"], result["rsxai_single"], result["nilearn"]
    fine, fine_single = result["rsxai_fine"], result["rsxai_fine_single"]
    lines = [
        "## Permutation GLM with TFCE: rsxai `permutation_glm` vs nilearn `permuted_ols`",
        "",
        f"{result['n_subjects']} subjects (two groups of {N_PER_GROUP}) x "
        f"{result['n_voxels']:,} voxels ({result['voxel_size']:g} mm MNI brain mask): smooth "
        f"noise (FWHM {NOISE_FWHM_MM:g} mm) plus, in the patients, a Gaussian blob "
        f"(FWHM {BLOB_FWHM_MM:g} mm, peak {EFFECT:g} SD) at MNI {BLOB_CENTRE_MM}; planted "
        f"region = profile above half its peak ({result['n_region_voxels']} voxels). "
        "One-sided patients > controls, TFCE H = 2, E = 0.5, 6-connectivity.",
        "",
        "- rsxai: `permutation_glm(maps, groups, grid, n_permutations=N, n_jobs=...)` "
        "(N includes the unpermuted data).",
        "- nilearn: `permuted_ols(groups, maps, model_intercept=True, n_perm=N, "
        "two_sided_test=False, tfce=True, masker=NiftiMasker(mask), n_jobs=1)`; the time for "
        f"{result['extrapolate_to']:,} is extrapolated linearly from the run.",
        "- Each run in its own fresh process, one BLAS thread. Peak memory = peak resident "
        "size of the process during the call, libraries and data (float32 for rsxai, float64 "
        "for nilearn, which converts to it) included; in brackets: above its resident size "
        "just before the call. With n_jobs = 2 the sum of the joblib workers' peaks is "
        "added (each worker holds its own imports).",
        "",
        "| run | voxels | permutations | n_jobs | time (s) | peak memory MiB (above start) |",
        "| --- | ---: | ---: | :---: | ---: | --- |",
        f"| rsxai | {ours['n_voxels']:,} | {ours['n_permutations']:,} | 2 "
        f"| {ours['seconds']:.1f} | {_memory(ours)} |",
        f"| rsxai | {single['n_voxels']:,} | {single['n_permutations']:,} | 1 "
        f"| {single['seconds']:.1f} | {_memory(single)} |",
        f"| nilearn | {result['n_voxels']:,} | {theirs['n_perm']:,} + 1 | 1 "
        f"| {theirs['seconds']:.1f} | {_memory(theirs)} |",
        f"| nilearn (extrapolated) | {result['n_voxels']:,} | {result['extrapolate_to']:,} | 1 "
        f"| {result['nilearn_extrapolated_seconds']:,.0f} | |",
        f"| rsxai, {result['fine_voxel_size']:g} mm | {fine['n_voxels']:,} "
        f"| {fine['n_permutations']:,} | 2 | {fine['seconds']:.1f} | {_memory(fine)} |",
        f"| rsxai, {result['fine_voxel_size']:g} mm | {fine_single['n_voxels']:,} "
        f"| {fine_single['n_permutations']:,} | 1 | {fine_single['seconds']:.1f} "
        f"| {_memory(fine_single)} |",
        "",
        "- Per permutation, one process each: rsxai is "
        f"**{result['speed_ratio_per_permutation_n_jobs_1']:.0f}x faster** than nilearn.",
        f"- t maps: largest absolute difference {result['max_abs_t_difference']:.1e} "
        f"(largest abs(t) {result['max_abs_t']:.1f}).",
        f"- -log10 FWE-corrected TFCE p (rsxai {ours['n_permutations']:,} permutations, "
        f"nilearn {theirs['n_perm']} + 1): correlation {result['logp_correlation']:.3f} "
        f"({result['logp_correlation_capped']:.3f} with rsxai's map capped at nilearn's "
        "smallest possible p).",
        f"- Planted region found at FWE p < {FWE_ALPHA:g} (TFCE): rsxai "
        f"{_found(result['rsxai_detection'])}; nilearn {_found(result['nilearn_detection'])} "
        "('far' = profile below 1 % of its peak).",
        "",
        *agreement_markdown(result["fwe_agreement"]),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__, quick_help="8 mm mask, few permutations")
    args = parser.parse_args(argv)
    print(markdown(run(quick=args.quick)))


if __name__ == "__main__":
    main()
