"""The command line: help, exit codes, error messages without tracebacks."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from rsxai import __version__
from rsxai.cli import EXIT_INPUT_ERROR, EXIT_INTERNAL_ERROR, build_parser, main
from rsxai.cli import commands as cli


def test_version(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"rsxai {__version__}"


@pytest.mark.parametrize("command", ["run", "simulate", "demo"])
def test_help_shows_defaults(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "default" in text
    if command == "run":
        for flag in (
            "--participant-label",
            "--task",
            "--space",
            "--random-seed",
            "--stop-after",
            "--config",
            "--positive-label",
            "-v",
            "-q",
        ):
            assert flag in text
        assert "default: rest;" in text and "[input] task" in " ".join(text.split())


def test_missing_input_is_exit_2_without_traceback(tmp_path, capsys):
    code = main(["run", str(tmp_path / "nowhere"), str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_INPUT_ERROR
    assert "rsxai: error: INPUT" in err and "does not exist" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_bad_config_file_is_exit_2(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text("[input]\ntask = 5\n")
    code = main(["run", str(tmp_path), str(tmp_path / "out"), "--config", str(config), "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_INPUT_ERROR
    assert f"rsxai: error: {config}: option input.task must be str; got 5." in err


def test_output_inside_input_is_refused(tmp_path, capsys):
    code = main(["run", str(tmp_path), str(tmp_path), "-q"])
    assert code == EXIT_INPUT_ERROR
    assert "never writes into its inputs" in capsys.readouterr().err


def test_stop_after_choices():
    parser = build_parser()
    args = parser.parse_args(["run", "in", "out", "--stop-after", "ica"])
    assert vars(args)["run.stop_after"] == "ica"
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "in", "out", "--stop-after", "nothing"])


@pytest.mark.parametrize("output_exists", [True, False])
def test_bug_is_one_line_with_the_traceback_in_a_log(tmp_path, capsys, monkeypatch, output_exists):
    def broken(args, argv):
        raise ZeroDivisionError("division by zero\nin a stage")

    monkeypatch.setattr(cli, "_run_command", broken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where a log goes without OUT
    out = tmp_path / "out"
    if output_exists:
        out.mkdir()
    code = main(["run", str(tmp_path), str(out), "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_INTERNAL_ERROR
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith(
        "rsxai: internal error: ZeroDivisionError: division by zero in a stage. This is a bug in "
        "rsxai"
    )
    log = err.rsplit("the traceback in ", 1)[1].strip().removesuffix(".")
    expected_folder = out if output_exists else tmp_path
    assert Path(log).parent == expected_folder
    text = Path(log).read_text(encoding="utf-8")
    assert text.startswith("Traceback") and "ZeroDivisionError" in text and "broken" in text
    assert main(["run", str(tmp_path), str(out), "-v"]) == EXIT_INTERNAL_ERROR
    assert "Traceback" in capsys.readouterr().err  # -v shows it on the console too


def test_simulate_help_and_docstring_name_the_default_effects(capsys):
    from rsxai.simulate import DEFAULT_EFFECTS, simulate_cohort

    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    docstring = " ".join(simulate_cohort.__doc__.split())
    assert f"Default: {len(DEFAULT_EFFECTS)} effects:" in help_text
    for effect in DEFAULT_EFFECTS:
        x, y, z = (f"{c:g}" for c in effect.center_mm)
        assert f"{effect.network} at {x} {y} {z} (radius" in help_text
        assert f"({x}, {y}, {z})" in docstring
    networks = [effect.network for effect in DEFAULT_EFFECTS]
    assert networks.count("sensorimotor") == 2 and networks.count("visual") == 1
    assert "two sensorimotor" in docstring and "one visual" in docstring
    assert "one sensorimotor and one visual" not in help_text + docstring


def test_lokys_worker_replacement_warning_is_not_logged(caplog):
    # loky replaces workers that grew by 300 MB and warns; no job is lost, so users
    # must not read it as a failure. Other warnings still reach the log.
    import logging
    import warnings

    from rsxai.cli.commands import _configure_logging

    with warnings.catch_warnings():
        _configure_logging(verbose=0, quiet=True)
        logging.getLogger("rsxai").propagate = True
        with caplog.at_level(logging.WARNING, logger="rsxai"):
            warnings.warn(
                "A worker stopped while some jobs were given to the executor. This can be "
                "caused by a too short worker timeout or by a memory leak.",
                UserWarning,
                stacklevel=1,
            )
            warnings.warn("component 3 matches no template well", UserWarning, stacklevel=1)
    logging.getLogger("rsxai").propagate = False
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["component 3 matches no template well"]
