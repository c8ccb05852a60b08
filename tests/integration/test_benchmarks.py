"""Smoke tests of the benchmark harness: tiny data, quick settings, figures not checked."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# benchmarks/ is a top-level folder of the repository, not part of the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.signal_cleaning import compare, markdown


def test_signal_cleaning_benchmark_reports_its_fields():
    result = compare(n_voxels=200, n_volumes=60, n_confounds=6, repeats=1)
    assert set(result) == {
        "n_voxels",
        "n_volumes",
        "n_confounds",
        "repeats",
        "rsxai_seconds",
        "nilearn_seconds",
        "speedup",
        "max_abs_difference",
    }
    assert (result["n_voxels"], result["n_volumes"], result["n_confounds"]) == (200, 60, 6)
    assert result["rsxai_seconds"] > 0 and result["nilearn_seconds"] > 0
    # The two implementations must agree (both z-score; rsxai returns float32).
    assert result["max_abs_difference"] < 1e-4
    section = markdown(result)
    assert section.startswith("## Signal cleaning") and "200 voxels x 60 volumes" in section


def test_sample_command_adds_up_the_memory_of_a_process_tree():
    from benchmarks.process_sampling import sample_command, window_peaks

    # The command starts two child processes that each hold 150 MiB of their own
    # (written, so resident) for a second; the tree's PSS must count both.
    script = (
        "import multiprocessing as mp, time\n"
        "def hold():\n"
        "    block = bytearray(150 * 2**20)\n"
        "    block[::4096] = b'x' * len(block[::4096])\n"
        "    time.sleep(1.5)\n"
        "if __name__ == '__main__':\n"
        "    workers = [mp.get_context('fork').Process(target=hold) for _ in range(2)]\n"
        "    [w.start() for w in workers]\n"
        "    [w.join() for w in workers]\n"
        "    print('done')\n"
    )
    result = sample_command([sys.executable, "-c", script], interval=0.1)
    assert result["stdout"].strip() == "done"
    assert result["max_processes"] >= 3
    assert 300 <= result["peak_pss_mb"] < 600
    assert result["peak_anon_mb"] >= 300
    assert result["peak_rss_mb"] >= result["peak_pss_mb"]
    # The parent alone never held the blocks.
    assert result["main_peak_rss_mb"] < 150
    samples = result["samples"]
    assert samples["time"] == sorted(samples["time"]) and samples["time"][-1] <= result["seconds"]
    first = window_peaks(samples, 0.0, samples["time"][0])
    assert first["n_samples"] == 1 and first["pss_mb"] == samples["pss_mb"][0]


def test_sample_command_reports_a_failing_command():
    from benchmarks.process_sampling import sample_command

    with pytest.raises(RuntimeError, match="exit 3"):
        sample_command([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"])


def _check_phases(phases, names, total_seconds):
    assert [row["phase"] for row in phases] == list(names)
    for row in phases:
        assert 0 <= row["begin"] <= row["end"] <= total_seconds + 1
        if row["end"] - row["begin"] > 1.0:  # a shorter phase may fall between two samples
            assert row["n_samples"] >= 1 and row["pss_mb"] > 0
    ends = [row["end"] for row in phases]
    assert ends == sorted(ends)


@pytest.mark.slow
def test_scale_benchmark_quick(tmp_path):
    from benchmarks import scale

    result = scale.run(tmp_path, quick=True)
    small, large = result["runs"]
    assert (small["n_subjects"], large["n_subjects"]) == (10, 12)
    for item in (small, large):
        _check_phases(
            item["phases"],
            ("input", "preprocess", "ica", "dual_regression", "finish"),
            item["seconds"],
        )
        assert item["max_processes"] >= 2  # the loky workers of --n-jobs 2 were seen
        sampled = [row["pss_mb"] for row in item["phases"] if row["n_samples"]]
        assert item["peak_pss_mb"] >= max(sampled)
    ica_rows = [{r["phase"]: r for r in item["phases"]}["ica"] for item in (small, large)]
    # NaN when a quick ICA stage fell between two samples.
    expected = ica_rows[1]["pss_mb"] / ica_rows[0]["pss_mb"]
    assert result["ica_peak_ratio"] == pytest.approx(expected, nan_ok=True)
    # The measured output folders are removed; the simulated cohort is kept for the next run.
    assert not (tmp_path / "scale-quick" / "out-12").exists()
    assert (tmp_path / "scale-quick" / "data" / "participants.tsv").exists()
    section = scale.markdown(result)
    assert section.startswith("## Scale: 12 subjects") and "--participant-label" in section


@pytest.mark.slow
def test_demo_benchmark_quick(tmp_path):
    from benchmarks import demo

    result = demo.run(tmp_path, quick=True)
    stages = ("preprocess", "ica", "dual_regression", "stats", "classify", "explain")
    names = [row["phase"] for row in result["phases"]]
    assert names == ["simulate", "input", *stages, "report", "finish"]
    _check_phases(result["phases"][1:], names[1:], result["seconds"])
    assert result["report_written"]
    assert result["settings"]["stats.n_permutations"] == 100
    assert list(tmp_path.iterdir()) == []  # the demo's folder is removed
    assert demo.markdown(result).startswith("## The demo end to end (quick stand-in)")


def test_fwe_agreement_holds_about_95_percent_for_equal_p_and_fails_for_different_p():
    import numpy as np
    from benchmarks.fwe_agreement import agreement_markdown, fwe_agreement, monte_carlo_se

    rng = np.random.default_rng(0)
    n_voxels, n_ours, n_theirs = 4000, 5000, 301
    profile = np.linspace(0.6, 1.0, n_voxels)  # every voxel in the region; the last is the peak
    ours = rng.binomial(n_ours, 0.2, n_voxels) / n_ours
    theirs = rng.binomial(n_theirs, 0.2, n_voxels) / n_theirs
    result = fwe_agreement(ours, n_ours, theirs, n_theirs, profile)
    assert result["region_voxels"] == n_voxels
    # Two independent binomial estimates of one p: ~95 % within 2 combined SE.
    assert 0.92 < result["region_agree"] < 0.98
    peak = result["rows"]["planted peak voxel"]
    assert (peak["rsxai_p"], peak["nilearn_p"]) == (ours[-1], theirs[-1])
    assert peak["rsxai_se"] == pytest.approx(np.sqrt(ours[-1] * (1 - ours[-1]) / n_ours))
    assert peak["agree"] == (
        abs(ours[-1] - theirs[-1]) <= 2 * np.hypot(peak["rsxai_se"], peak["nilearn_se"])
    )
    assert result["rows"]["region, smallest p"]["rsxai_p"] == ours.min()
    assert monte_carlo_se(1.0, 10) == 0.0
    # A real difference of p (0.2 vs 0.35) is seen at almost every voxel.
    other = rng.binomial(n_theirs, 0.35, n_voxels) / n_theirs
    differing = fwe_agreement(ours, n_ours, other, n_theirs, profile)
    assert differing["region_agree"] < 0.1
    assert not differing["rows"]["region, median p"]["agree"]
    assert "| planted peak voxel |" in "\n".join(agreement_markdown(result))


def test_attribution_benchmark_uses_the_brain_mask_bounding_box_at_4_mm():
    import numpy as np
    from benchmarks.attribution import cnn_input_shape, layer_spatial_shape

    from rsxai.cnn import build_model
    from rsxai.explain import default_target_layer
    from rsxai.grid import mni_brain_mask

    shape = cnn_input_shape(4.0)
    voxels = np.argwhere(mni_brain_mask(4.0))
    assert shape == tuple(int(n) for n in voxels.max(axis=0) - voxels.min(axis=0) + 1)
    model = build_model("cnn3d", in_shape=shape).eval()
    layer = default_target_layer(model, shape)
    expected = model.activation_shapes(shape)[list(model.explanation_layers).index(layer)]
    assert tuple(layer_spatial_shape(model, layer, shape)) == tuple(expected)


def test_benchmark_parser_defaults_data_dir_to_the_temporary_folder(tmp_path, monkeypatch):
    import tempfile

    from benchmarks.measurement import benchmark_parser

    # The default is read when the parser is made, so it follows TMPDIR.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    parser = benchmark_parser(
        "First line.\n\nMore.", quick_help="small", data_dir_help="where data is kept"
    )
    assert parser.description == "First line."
    args = parser.parse_args([])
    assert args.quick is False
    assert args.data_dir == str(tmp_path / "rsxai-benchmarks")
    args = parser.parse_args(["--quick", "--data-dir", "elsewhere"])
    assert (args.quick, args.data_dir) == (True, "elsewhere")
    # --help shows the default (argparse wraps long lines, so compare without whitespace).
    expected = "(default: " + str(tmp_path / "rsxai-benchmarks") + ")"
    assert expected.replace(" ", "") in "".join(parser.format_help().split())


def test_benchmark_parser_without_data_dir_refuses_the_option(capsys):
    from benchmarks.measurement import benchmark_parser

    parser = benchmark_parser("A benchmark.", quick_help="small")
    assert not hasattr(parser.parse_args(["--quick"]), "data_dir")
    with pytest.raises(SystemExit):
        parser.parse_args(["--data-dir", "x"])
    assert "unrecognized arguments: --data-dir" in capsys.readouterr().err


def test_benchmark_main_hands_the_shared_options_to_run(monkeypatch, capsys):
    from benchmarks import network_maps

    calls = []
    monkeypatch.setattr(
        network_maps, "run", lambda data_dir, quick: calls.append((data_dir, quick)) or {}
    )
    monkeypatch.setattr(network_maps, "markdown", lambda result: "## section")
    network_maps.main(["--quick", "--data-dir", "cohorts"])
    assert calls == [("cohorts", True)]
    assert capsys.readouterr().out == "## section\n"


def test_a_kept_cohort_counts_as_stale_when_its_planted_effects_differ(tmp_path):
    # Kept benchmark cohorts (benchmarks.cohort, benchmarks.scale_cohort) are simulated
    # again when an older simulator planted other effects than today's defaults.
    import json
    from dataclasses import asdict, replace

    from benchmarks.cohort import planted_as_today

    from rsxai.simulate import DEFAULT_EFFECTS

    assert planted_as_today(tmp_path)  # nothing simulated yet
    truth = tmp_path / "ground_truth"
    truth.mkdir()

    def keep(effects):
        rows = [asdict(e) | {"center_mm": list(e.center_mm)} for e in effects]
        (truth / "parameters.json").write_text(json.dumps({"effects": rows}))

    keep(DEFAULT_EFFECTS)
    assert planted_as_today(tmp_path)
    first = DEFAULT_EFFECTS[0]
    keep([replace(first, strength=first.strength / 2), *DEFAULT_EFFECTS[1:]])
    assert not planted_as_today(tmp_path)


def test_migp_dimension_benchmark_ranks_m_by_accuracy():
    from benchmarks import migp_dimension

    result = migp_dimension.run(quick=True, run_lengths=(60,))
    rows = {row["m"]: row for row in result["rows"]}
    # MELODIC's 2T - 1 = 119 (also the default here: 15 K = 300 is larger) and 5 K = 100.
    assert set(rows) == {119, 100}
    assert rows[119]["label"] == "MELODIC's 2T - 1, rsxai's default"
    # The exact reference is the same for both; fewer rows kept, a worse top-K space.
    assert 0 < rows[119]["k"]["max_angle_degrees"] < rows[100]["k"]["max_angle_degrees"]
    assert "| 60 | 100 | 5 K |" in migp_dimension.markdown(result)
