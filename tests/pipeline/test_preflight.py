"""Options whose valid range depends on the cohort fail at start-up: exit 2, nothing run."""

from __future__ import annotations

import pytest

from rsxai.cli import EXIT_INPUT_ERROR, main
from tests.fixtures.fmriprep import VOXEL_MM, default_groups, make_fmriprep_tree

N_VOLUMES = 40

# Fast settings on the fixture's 10 mm grid: every stage would run in seconds, so a
# check that came after a stage would leave its marker behind.
FLAGS = [
    "--motion",
    "none",
    "--min-volumes",
    "20",
    "--min-per-group",
    "5",
    "--voxel-size",
    str(VOXEL_MM),
    "--n-components",
    "4",
    "--ica-restarts",
    "2",
    "--cv-folds",
    "3",
    "--n-permutations",
    "10",
    "-q",
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Six subjects per group, covariates age and sex."""
    return make_fmriprep_tree(
        tmp_path_factory.mktemp("preflight") / "ds", default_groups(6), n_volumes=N_VOLUMES
    )


def run_bad(tree, tmp_path, capsys, *flags):
    """Run with ``flags``; return the error lines after checking that nothing ran."""
    out = tmp_path / "out"
    code = main(["run", str(tree.root), str(out), *FLAGS, *flags])
    err = capsys.readouterr().err
    assert code == EXIT_INPUT_ERROR, err
    assert "internal error" not in err and "Traceback" not in err
    assert not list(out.glob(".rsxai/stages/*")), "a stage ran before the check"
    return [line for line in err.splitlines() if line.startswith("rsxai: error:")]


def test_unknown_network_names_the_known_ones(tree, tmp_path, capsys):
    lines = run_bad(tree, tmp_path, capsys, "--networks", "nonexistent", "visual", "bogus")
    assert len(lines) == 2
    assert "--networks: unknown network 'nonexistent'" in lines[0]
    assert "--networks: unknown network 'bogus'" in lines[1]
    assert "Known networks: sensorimotor, visual, default_mode" in lines[0]


def test_forced_component_out_of_range_names_the_range(tree, tmp_path, capsys):
    lines = run_bad(tree, tmp_path, capsys, "--force-component", "DMN=999", "nowhere=1")
    text = "\n".join(lines)
    assert "--force-component DMN=999: the component index must be from 0 to 3" in text
    assert "--force-component: unknown network 'nowhere'" in text
    assert len(lines) == 2


def test_forced_component_with_auto_components_checks_sign_only(tree, tmp_path, capsys):
    lines = run_bad(
        tree, tmp_path, capsys, "--n-components", "auto", "--force-component", "DMN=-1"
    )
    assert lines == [
        "rsxai: error: --force-component DMN=-1: the component index must be >= 0; got -1. "
        "Components are numbered from 0 in group/desc-ica_components.tsv."
    ]


def test_n_jobs_zero_is_refused_with_the_other_option_problems(tree, tmp_path, capsys):
    lines = run_bad(tree, tmp_path, capsys, "--n-jobs", "0", "--networks", "nonexistent")
    text = "\n".join(lines)
    assert "--n-jobs must be >= 1 or -1 (all cores); got 0." in text
    assert "--networks: unknown network 'nonexistent'" in text


def test_data_dependent_options_all_listed_before_any_stage(tree, tmp_path, capsys):
    lines = run_bad(
        tree,
        tmp_path,
        capsys,
        "--cv-folds",
        "100",
        "--n-components",
        "5000",
        "--covariates",
        "bmi",
    )
    text = "\n".join(lines)
    assert len(lines) == 3
    assert "cv_folds must be between 2 and the size of the smaller group (6); got 100" in text
    # 2 x 40 volumes - 1: MIGP's default dimension bounds the group ICA dimension.
    assert "--n-components must be between 1 and 79 for these data; got 5000" in text
    assert "--covariates: bmi not in participants.tsv; available: age, sex." in text


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--cv-folds", "7"], "size of the smaller group (6); got 7"),
        (["--covariates", "bmi"], "--covariates: bmi not in participants.tsv"),
        (["--n-components", "80"], "between 1 and 79 for these data; got 80"),
        (
            ["--n-components", "20", "--migp-dim", "10"],
            "between 1 and 10 for these data; got 20. The limit is migp_dim (10",
        ),
    ],
)
def test_each_data_dependent_option_alone(tree, tmp_path, capsys, flags, expected):
    lines = run_bad(tree, tmp_path, capsys, *flags)
    assert len(lines) == 1 and expected in lines[0]
