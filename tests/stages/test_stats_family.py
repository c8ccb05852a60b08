"""The stats stage corrects FWE over the voxels and the contrasts of each network.

Two one-sided contrasts each thresholded at 0.05 give a false positive in either
with probability near 0.10; the maps, counts, cluster tables and summary.json
written are those corrected over both (:func:`rsxai.stats.fwe_over_contrasts`),
the ones corrected within one contrast only are kept under names that say so,
and the explanation agreement's FWE voxels are the corrected ones, with the
correction recorded.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from rsxai.cli import main
from rsxai.grid import Grid, mni_brain_mask, mni_grid
from rsxai.outputs import output_path, read_json
from rsxai.stages.explain_inputs import statistics_maps
from rsxai.stats import fwe_over_contrasts, permutation_glm

VOXEL_MM = 8.0
GROUPS = np.array(["ALS", "HC"] * 10)
BOTH = ["patients>controls", "controls>patients"]
N_PERMUTATIONS = 100


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """20 subject maps on the 8 mm MNI grid, patients higher in a blob; their table."""
    folder = tmp_path_factory.mktemp("family")
    affine, shape = mni_grid(VOXEL_MM)
    brain = mni_brain_mask(VOXEL_MM)
    world = (np.indices(shape).reshape(3, -1).T @ affine[:3, :3].T + affine[:3, 3]).reshape(
        *shape, 3
    )
    blob = np.exp(-0.5 * (np.linalg.norm(world - [-38.0, -22.0, 56.0], axis=-1) / 12.0) ** 2)
    rng = np.random.default_rng(7)
    data = np.zeros((*shape, GROUPS.size), dtype=np.float32)
    data[brain] = rng.standard_normal((int(brain.sum()), GROUPS.size))
    data += (3.0 * blob[..., None] * (GROUPS == "ALS")) * brain[..., None]
    stack = folder / "dr_stage2_ic0001.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), stack)
    subjects = folder / "participants.tsv"
    pd.DataFrame(
        {"participant_id": [f"sub-{i:02d}" for i in range(1, 21)], "group": GROUPS}
    ).to_csv(subjects, sep="\t", index=False)
    return stack, subjects, data


def _run(inputs, out, contrasts):
    stack, subjects, _ = inputs
    flags = ["--n-permutations", str(N_PERMUTATIONS), "--contrasts", *contrasts, "-q"]
    assert main(["stats", str(stack), str(subjects), str(out), *flags]) == 0
    grid = Grid.from_img(output_path(out, "mask"))
    return grid, read_json(output_path(out, "summary"))


@pytest.fixture(scope="module")
def both(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("both") / "out"
    grid, summary = _run(inputs, out, BOTH)
    return out, grid, summary


def _reference(inputs, grid, contrasts):
    """The stage's computation done here: permutation_glm per contrast, then the family."""
    maps = grid.from_img_data(inputs[2])
    y = (GROUPS == "ALS").astype(int)
    results = {
        c: permutation_glm(maps, y, grid, contrast=c, n_permutations=N_PERMUTATIONS)
        for c in contrasts
    }
    return results, fwe_over_contrasts(results)


def _p(out, grid, relative):
    return 10.0 ** -grid.from_img_data(np.asarray(nib.load(out / relative).dataobj, np.float64))


def test_fwe_maps_counts_and_clusters_are_corrected_over_both_contrasts(inputs, both):
    out, grid, summary = both
    entry = summary["stats"]
    assert entry["fwe_contrasts"] == BOTH
    assert (entry["alpha"], entry["n_networks"], entry["n_tests"]) == (0.05, 1, 2)
    assert "FWE over the voxels and the 2 contrasts of each network" in entry["correction"]
    assert "randomise --corrcon" in entry["correction"]
    assert "Bonferroni over networks" in entry["correction"]
    assert "corrected over the voxels and the 2 contrast(s)" in entry["clusters"]
    results, family = _reference(inputs, grid, BOTH)
    raised = False
    for contrast in BOTH:
        written = entry["networks"]["ic0001"][contrast]
        corrected = _p(out, grid, written["maps"]["logpFWEtfce"])
        within = _p(out, grid, written["maps"]["logpFWEtfceUncorrectedContrasts"])
        np.testing.assert_allclose(corrected, family.p_fwe_tfce[contrast], rtol=1e-5)
        np.testing.assert_allclose(within, results[contrast].p_fwe_tfce, rtol=1e-5)
        np.testing.assert_allclose(
            _p(out, grid, written["maps"]["logpFWEt"]), family.p_fwe_t[contrast], rtol=1e-5
        )
        np.testing.assert_allclose(
            _p(out, grid, written["maps"]["logpFWEtUncorrectedContrasts"]),
            results[contrast].p_fwe_t,
            rtol=1e-5,
        )
        raised |= bool(np.any(family.p_fwe_tfce[contrast] > results[contrast].p_fwe_tfce))
        p_fwe = family.p_fwe_tfce[contrast]
        assert written["n_fwe_significant_voxels"] == int((p_fwe < 0.05).sum())
        assert written["min_p_fwe"] == pytest.approx(p_fwe.min())
        assert written["min_p_fwe_bonferroni_networks"] == pytest.approx(p_fwe.min())
        clusters = pd.read_csv(out / written["clusters"], sep="\t")
        assert clusters["size_voxels"].sum() == written["n_fwe_significant_voxels"]
    assert raised  # the correction over contrasts did raise some p-values
    # The planted effect (patients higher) survives the correction; nothing the other way.
    networks = entry["networks"]["ic0001"]
    assert networks["patients>controls"]["n_clusters"] >= 1
    assert networks["controls>patients"]["n_fwe_significant_voxels"] == 0


def test_a_single_contrast_keeps_its_own_fwe_p_values(inputs, tmp_path):
    out = tmp_path / "one"
    grid, summary = _run(inputs, out, ["patients>controls"])
    entry = summary["stats"]
    assert entry["fwe_contrasts"] == ["patients>controls"]
    assert "one contrast, patients>controls" in entry["correction"]
    written = entry["networks"]["ic0001"]["patients>controls"]
    assert not [stat for stat in written["maps"] if "UncorrectedContrasts" in stat]
    results, _ = _reference(inputs, grid, ["patients>controls"])
    np.testing.assert_allclose(
        _p(out, grid, written["maps"]["logpFWEtfce"]),
        results["patients>controls"].p_fwe_tfce,
        rtol=1e-5,
    )


def test_explanation_agreement_uses_the_corrected_voxels_and_says_which(both):
    out, grid, summary = both
    statistics = statistics_maps(out, summary, "ic0001", grid)
    networks = summary["stats"]["networks"]["ic0001"]
    expected = np.zeros(grid.n_voxels, dtype=bool)
    for contrast in BOTH:
        expected |= _p(out, grid, networks[contrast]["maps"]["logpFWEtfce"]) < 0.05 * (1 - 1e-5)
    np.testing.assert_array_equal(statistics["significant"], expected)
    assert statistics["significant"].sum() == sum(
        networks[c]["n_fwe_significant_voxels"] for c in BOTH
    )
    assert statistics["correction"] == (
        "p_FWE < 0.05 over the voxels and the 2 contrasts (patients>controls, "
        "controls>patients; maximum statistic); voxels of patients>controls or controls>patients"
    )
    # A summary of an earlier rsxai (no fwe_contrasts): read as it is, and said so.
    older = {
        **summary,
        "stats": {k: v for k, v in summary["stats"].items() if k != "fwe_contrasts"},
    }
    text = statistics_maps(out, older, "ic0001", grid)["correction"]
    assert "over the voxels of each contrast only, not corrected over the 2 contrasts" in text
