"""Options registry, TOML loading and precedence."""

from __future__ import annotations

import pytest

from rsxai.config import OPTIONS, load_config_file, resolve_config
from rsxai.exceptions import InputError


def test_defaults_come_from_the_registry():
    config = resolve_config()
    for option in OPTIONS:
        assert getattr(getattr(config, option.section), option.name) == option.default


def test_file_then_flags_precedence(tmp_path):
    path = tmp_path / "rsxai.toml"
    path.write_text('[input]\ntask = "movie"\nmin_volumes = 80\n[run]\nrandom_seed = 3\n')
    config = resolve_config(load_config_file(path), {"run.random_seed": 7})
    assert config.input.task == "movie"  # from the file
    assert config.input.min_volumes == 80
    assert config.run.random_seed == 7  # the flag wins over the file
    assert config.input.space == "MNI152NLin2009cAsym"  # default kept


def test_resolved_toml_round_trips(tmp_path):
    config = resolve_config(
        overrides={"input.participant_label": ["01", "02"], "input.positive_label": "ALS"}
    )
    path = tmp_path / "resolved.toml"
    path.write_text(config.to_toml())
    again = resolve_config(load_config_file(path))
    assert again.to_dict() == config.to_dict()
    assert again.input.participant_label == ["01", "02"]


def test_every_problem_of_a_file_is_reported(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        '[input]\ntask = 3\nnot_an_option = 1\nmulti_run = "all"\n[nonsense]\nx = 1\n'
        "[run]\nmin_volumes = 1\nn_jobs = -5\n"
    )
    with pytest.raises(InputError) as info:
        load_config_file(path)
    problems = info.value.problems
    text = "\n".join(problems)
    assert str(path) in problems[0]
    assert "input.task must be str; got 3" in text
    assert "unknown option 'not_an_option' in [input]" in text
    assert "input.multi_run must be one of 'first', 'concatenate'; got 'all'" in text
    assert "unknown section [nonsense]" in text
    assert "unknown option 'min_volumes' in [run]" in text
    assert "run.n_jobs must be at least -1; got -5" in text


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[input\ntask = ")
    with pytest.raises(InputError, match=r"broken\.toml: not valid TOML"):
        load_config_file(path)
    with pytest.raises(InputError, match="configuration file not found"):
        load_config_file(tmp_path / "missing.toml")


def test_bool_is_not_an_int():
    with pytest.raises(InputError, match=r"run\.random_seed must be int; got True"):
        resolve_config(overrides={"run.random_seed": True})


def test_fingerprint_changes_only_with_its_sections():
    base = resolve_config()
    other_seed = resolve_config(overrides={"run.random_seed": 1})
    assert base.fingerprint("input") == other_seed.fingerprint("input")
    assert base.fingerprint("run") != other_seed.fingerprint("run")


def test_the_readme_configuration_example_is_valid(tmp_path):
    # The README's example is what users copy: every key in it must exist and validate.
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    example = tmp_path / "rsxai.toml"
    example.write_text(readme.split("```toml\n", 1)[1].split("```", 1)[0], encoding="utf-8")
    config = resolve_config(load_config_file(example))
    assert config.stats.tfce_connectivity == 6 and config.classify.cv_scope == "fold"


def test_cnn_training_options_reach_the_classifier():
    import numpy as np

    from rsxai.stages import cnn_estimator

    config = resolve_config(
        {}, {"classify.cnn_patience": 4, "classify.cnn_start_from_epoch": 3, "run.random_seed": 5}
    )
    model = cnn_estimator(config, np.ones((4, 4, 4), dtype=bool))
    assert (model.patience, model.start_from_epoch, model.random_state) == (4, 3, 5)
    assert resolve_config().classify.cnn_start_from_epoch == 10  # the classifier's default
    with pytest.raises(InputError, match="cnn_start_from_epoch"):
        resolve_config({}, {"classify.cnn_start_from_epoch": -1})
