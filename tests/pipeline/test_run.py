"""End to end: `rsxai simulate` then `rsxai run`, checked against the planted ground truth."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from rsxai.cli import EXIT_INPUT_ERROR, main
from rsxai.config import load_config_file
from rsxai.grid import Grid
from rsxai.simulate import load_ground_truth, simulate_cohort

# Small enough for CI, large enough for group ICA to find the planted networks.
RUN_FLAGS = [
    "--voxel-size",
    "6",
    "--n-components",
    "12",
    "--ica-restarts",
    "3",
    "--n-permutations",
    "200",
    "--min-per-group",
    "5",
    "--cv-folds",
    "3",
    "--cnn-epochs",
    "3",
    "--cnn-width",
    "4",
    "--baseline-permutations",
    "19",
    "-q",
]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    cohort = simulate_cohort(
        root / "data",
        n_patients=10,
        n_controls=10,
        n_volumes=100,
        voxel_size=6.0,
        seed=3,
        n_jobs=2,
        progress=False,
    )
    return cohort


@pytest.fixture(scope="module")
def finished_run(simulated):
    out = simulated.bids_root.parent / "out"
    assert main(["run", str(simulated.bids_root), str(out), *RUN_FLAGS]) == 0
    return out


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _result_files(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): _digest(p)
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.suffix in {".gz", ".tsv"} and ".rsxai" not in p.parts
    }


def test_simulated_cohort_is_read_without_warning(finished_run):
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["warnings"] == []
    assert summary["subjects"]["n"] == 20
    assert summary["subjects"]["groups"] == {"ALS": 10, "HC": 10}
    assert summary["subjects"]["positive_label"] == "ALS"
    log = (finished_run / "rsxai.log").read_text()
    assert "WARNING" not in log


def test_output_folder_is_complete(finished_run, simulated):
    description = json.loads((finished_run / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    resolved = load_config_file(finished_run / "rsxai.toml")
    assert resolved["preprocess"]["voxel_size"] == 6.0
    assert resolved["ica"]["n_components"] == 12
    provenance = json.loads((finished_run / "provenance.json").read_text())
    assert provenance["random_seed"] == 0
    assert provenance["versions"]["nilearn"]
    bold = next((simulated.fmriprep_dir / "sub-001" / "func").glob("*_bold.nii.gz"))
    assert provenance["input_checksums"][str(bold.resolve())] == f"sha256:{_digest(bold)}"
    for stage in ("preprocess", "ica", "dual_regression", "stats", "classify"):
        assert provenance["stages"][stage]["status"] == "computed"
    assert (finished_run / "report.html").stat().st_size > 10_000


def test_networks_are_found_where_they_were_planted(finished_run, simulated):
    truth = load_ground_truth(simulated.ground_truth_dir)
    grid = Grid.from_img(finished_run / "group" / "desc-brain_mask.nii.gz")
    planted = grid.from_img_data(truth.networks)  # (9, V)
    components = grid.from_img_data(
        np.asarray(nib.load(finished_run / "group" / "desc-ica_components.nii.gz").dataobj)
    )
    r = np.corrcoef(planted, components)[: len(planted), len(planted) :]
    summary = json.loads((finished_run / "summary.json").read_text())
    for network in ("sensorimotor", "visual"):
        chosen = summary["networks"][network]["component"]
        truth_row = truth.network_names.index(network)
        assert np.argmax(r[truth_row]) == chosen, network
        assert r[truth_row, chosen] > 0.4  # 20 subjects x 100 volumes: noisy but clear


def test_dual_regression_outputs_and_subject_stacks(finished_run, simulated):
    summary = json.loads((finished_run / "summary.json").read_text())
    entry = summary["networks"]["visual"]
    stack = nib.load(finished_run / entry["subject_maps"])
    order = pd.read_csv(finished_run / entry["subject_order"], sep="\t")
    assert stack.shape[3] == 20
    assert order["participant_id"].tolist() == [f"sub-{label}" for label in simulated.subjects]
    sub = finished_run / "sub-001"
    maps = nib.load(sub / "sub-001_desc-dr_stat-effect_components.nii.gz")
    assert maps.shape[3] == 12
    timeseries = pd.read_csv(sub / "sub-001_desc-dr_timeseries.tsv", sep="\t")
    assert timeseries.shape == (100, 12)
    # The subject's visual map in the stack is volume `component` of its own maps.
    own = np.asarray(maps.dataobj)[..., entry["component"]]
    first = order["participant_id"].tolist().index("sub-001")
    assert np.allclose(np.asarray(stack.dataobj)[..., first], own)
    qc = pd.read_csv(finished_run / "group" / "desc-dr_qc.tsv", sep="\t")
    group_map = np.asarray(nib.load(finished_run / entry["group_map"]).dataobj)
    mask = np.asarray(nib.load(finished_run / "group" / "desc-brain_mask.nii.gz").dataobj) > 0
    expected = np.corrcoef(own[mask], group_map[mask])[0, 1]
    assert qc.loc[first, "r_visual"] == pytest.approx(expected, abs=1e-4)
    # Single-subject maps are noisy (100 volumes) but all lean towards the group map.
    assert (qc["r_visual"] > 0).all()


def test_group_statistics_per_network_and_contrast(finished_run):
    stats = json.loads((finished_run / "summary.json").read_text())["stats"]
    assert stats["n_tests"] == 4  # 2 networks x 2 contrasts
    # FWE over the voxels and both contrasts of each network; Bonferroni over the networks.
    assert stats["fwe_contrasts"] == ["patients>controls", "controls>patients"]
    assert stats["n_networks"] == 2
    assert {k: stats["tfce"][k] for k in ("H", "E", "connectivity")} == {
        "H": 2.0,
        "E": 0.5,
        "connectivity": 6,
    }
    for network in ("sensorimotor", "visual"):
        for contrast in ("patients>controls", "controls>patients"):
            entry = stats["networks"][network][contrast]
            assert entry["n_permutations"] == 200
            t_map = np.asarray(nib.load(finished_run / entry["maps"]["t"]).dataobj)
            top = t_map.max() if t_map.max() > 0 else np.abs(t_map).max()
            assert entry["tfce_dh"] == pytest.approx(top / 100, rel=1e-3)
            log_p = np.asarray(nib.load(finished_run / entry["maps"]["logpFWEtfce"]).dataobj)
            # The smallest possible permutation p is 1/200.
            assert log_p.max() <= np.log10(200) + 1e-6
            assert entry["min_p_fwe"] == pytest.approx(10 ** -log_p.max(), rel=1e-4)
            assert entry["min_p_fwe_bonferroni_networks"] == pytest.approx(
                min(1.0, 2 * entry["min_p_fwe"])
            )
    t_up = nib.load(finished_run / stats["networks"]["visual"]["patients>controls"]["maps"]["t"])
    t_down = nib.load(finished_run / stats["networks"]["visual"]["controls>patients"]["maps"]["t"])
    assert np.allclose(np.asarray(t_up.dataobj), -np.asarray(t_down.dataobj), atol=1e-5)
    visual = stats["networks"]["visual"]
    assert visual["patients>controls"]["peak_t"] == pytest.approx(np.asarray(t_up.dataobj).max())
    assert visual["controls>patients"]["peak_t"] == pytest.approx(np.asarray(t_down.dataobj).max())


def test_rerun_reuses_everything_and_changes_nothing(finished_run, simulated):
    before = _result_files(finished_run)
    # Options that only validate the input change no output: nothing is redone.
    flags = [*RUN_FLAGS, "--no-check-data", "--min-volumes", "20"]
    assert main(["run", str(simulated.bids_root), str(finished_run), *flags]) == 0
    provenance = json.loads((finished_run / "provenance.json").read_text())
    for stage in ("preprocess", "ica", "dual_regression", "stats"):
        assert provenance["stages"][stage]["status"] == "reused"
    assert _result_files(finished_run) == before


def test_changed_setting_recomputes_only_what_depends_on_it(finished_run, simulated):
    flags = [*RUN_FLAGS, "--no-des-norm"]
    assert main(["run", str(simulated.bids_root), str(finished_run), *flags]) == 0
    stages = json.loads((finished_run / "provenance.json").read_text())["stages"]
    assert stages["preprocess"]["status"] == "reused"
    # des_norm is used by the ICA stage's NetworkMaps too, so both are redone.
    assert stages["ica"]["status"] == "computed"
    assert stages["dual_regression"]["status"] == "computed"
    # Which group is the patients' flips every contrast: statistics are redone.
    flags += ["--positive-label", "HC", "--stop-after", "stats"]
    assert main(["run", str(simulated.bids_root), str(finished_run), *flags]) == 0
    stages = json.loads((finished_run / "provenance.json").read_text())["stages"]
    assert stages["preprocess"]["status"] == stages["ica"]["status"] == "reused"
    assert stages["stats"]["status"] == "computed"


def test_variance_normalise_redoes_dual_regression_on_the_same_cache(finished_run, simulated):
    maps_path = finished_run / "sub-001" / "sub-001_desc-dr_stat-effect_components.nii.gz"
    cache = sorted((finished_run / ".rsxai" / "work").glob("preprocess-*/sub-001.npy"))
    assert len(cache) == 1
    series = np.load(cache[0])
    # The cache keeps each voxel's amplitude (grand-mean scaled, not z-scored).
    std = series.std(axis=0, ddof=1)
    assert not np.allclose(std[std > 0], 1.0, rtol=0.5)
    assert np.percentile(std[std > 0], 99) > 1.2 * np.percentile(std[std > 0], 1)
    before = np.asarray(nib.load(maps_path).dataobj)
    flags = [*RUN_FLAGS, "--variance-normalise", "--stop-after", "dual_regression"]
    assert main(["run", str(simulated.bids_root), str(finished_run), *flags]) == 0
    stages = json.loads((finished_run / "provenance.json").read_text())["stages"]
    assert stages["preprocess"]["status"] == "reused"
    assert stages["dual_regression"]["status"] == "computed"
    assert np.array_equal(np.load(cache[0]), series)
    after = np.asarray(nib.load(maps_path).dataobj)
    assert not np.allclose(after, before, rtol=0.05)


def test_same_seed_gives_identical_outputs(finished_run, simulated, tmp_path):
    # finished_run may have been re-run with other settings; compare two fresh runs.
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        flags = [*RUN_FLAGS, "--stop-after", "ica"]
        assert main(["run", str(simulated.bids_root), str(out), *flags]) == 0
    assert _result_files(first) == _result_files(second)
    assert _result_files(first)  # something was compared


def test_bad_input_stops_before_writing(simulated, tmp_path, capsys):
    data = tmp_path / "broken"
    data.mkdir()
    (data / "manifest.tsv").write_text(
        "subject\tbold\tgroup\n01\tmissing.nii.gz\tALS\n02\tmissing2.nii.gz\tHC\n"
    )
    out = tmp_path / "out"
    code = main(["run", str(data / "manifest.tsv"), str(out), "--min-per-group", "1", "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_INPUT_ERROR
    assert "missing.nii.gz" in err and "missing2.nii.gz" in err
    assert "Traceback" not in err
    assert not out.exists()
