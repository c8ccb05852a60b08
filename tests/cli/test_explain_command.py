"""`rsxai explain OUTPUT_DIR`: its --device flag, and rsxai.toml written back after success.

The output folder is the one :mod:`test_explain_stage` fabricates (real CNNs,
trained once for this module); each test works on its own copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import tomli_w
import torch

from rsxai.cli import EXIT_INPUT_ERROR, main
from rsxai.config import load_config_file, resolve_config
from rsxai.outputs import output_path, read_json
from tests.stages.test_explain import NETWORK, OPTIONS, _fabricate

#: The cheapest explanation: one method, one target, no checks.
FAST = [
    "--explain-methods",
    "integrated_gradients",
    "--explain-targets",
    "patient",
    "--ig-steps",
    "5",
    "--no-sanity-checks",
    "--n-faithfulness-subjects",
    "0",
    "-q",
]


#: The options the tests give `rsxai explain`, as configuration keys.
EXPLAIN_FLAGS = {
    "run.device": "cpu",
    "explain.methods": ["integrated_gradients"],
    "explain.targets": ["patient"],
    "explain.ig_steps": 5,
    "explain.sanity_checks": False,
    "explain.n_faithfulness_subjects": 0,
}


@pytest.fixture(scope="module")
def fabricated(one_torch_thread, tmp_path_factory):
    return _fabricate(tmp_path_factory.mktemp("explain_cli"), with_truth=False)["out"]


@pytest.fixture
def folder(fabricated, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(fabricated, out)
    return out


def _rewrite_config(out, text: str) -> None:
    output_path(out, "config").write_text(text, encoding="utf-8")


def test_flags_are_written_back_as_rsxai_run_would_write_them(folder):
    toml = output_path(folder, "config")
    # The run's own file asks for a GPU: --device cpu must override it.
    _rewrite_config(folder, resolve_config(overrides=OPTIONS | {"run.device": "cuda"}).to_toml())
    given = load_config_file(toml)
    assert main(["explain", str(folder), "--device", "cpu", *FAST]) == 0
    written = load_config_file(toml)
    assert written["run"]["device"] == "cpu"
    assert written["explain"]["ig_steps"] == 5
    assert written["explain"]["methods"] == ["integrated_gradients"]
    assert written["explain"]["sanity_checks"] is False
    assert written["classify"]["cnn_epochs"] == 25  # the run's options are kept
    # The very text `rsxai run` writes for the merged configuration.
    assert toml.read_text(encoding="utf-8") == resolve_config(given, EXPLAIN_FLAGS).to_toml()
    # rsxai.toml now describes the explanations in the folder.
    entry = read_json(output_path(folder, "summary"))["explanations"]
    assert entry["options"] == dict(resolve_config(written).explain)
    assert entry["methods"] == ["integratedgradients"]


def test_a_partial_rsxai_toml_stays_partial(folder):
    """The file of `rsxai classify` lists only its options: no defaults of other stages appear."""
    header = (
        "# rsxai configuration of the commands run into this folder (rsxai stats / classify).\n"
    )
    classify = dict(resolve_config(overrides=OPTIONS).classify)
    partial = {"classify": classify, "run": {"device": "cpu"}}
    _rewrite_config(folder, header + tomli_w.dumps(partial))
    assert main(["explain", str(folder), *FAST]) == 0
    text = output_path(folder, "config").read_text(encoding="utf-8")
    assert text.startswith(header)
    written = load_config_file(output_path(folder, "config"))
    assert set(written) == {"classify", "run", "explain"}
    assert written["classify"] == classify and written["run"] == {"device": "cpu"}
    assert written["explain"]["ig_steps"] == 5
    assert "target_layer" not in written["explain"]  # not set: left out, as TOML has no null


def test_a_failed_explain_leaves_rsxai_toml_as_it_was(folder, capsys):
    toml = output_path(folder, "config")
    before = toml.read_bytes()
    # A CUDA device on this CPU-only machine: the flag reaches the CNNs and is refused there.
    code = main(["explain", str(folder), "--device", "cuda", *FAST])
    err = capsys.readouterr().err
    if torch.cuda.is_available():  # pragma: no cover - a GPU machine explains on it
        assert code == 0
        return
    assert code == EXIT_INPUT_ERROR
    assert "device='cuda'" in err and "no CUDA GPU" in err and "Traceback" not in err
    assert toml.read_bytes() == before
    code = main(["explain", str(folder), "--target-layer", "blocks.9.act", *FAST])
    assert code == EXIT_INPUT_ERROR and "blocks.9.act" in capsys.readouterr().err
    assert toml.read_bytes() == before
    assert not output_path(
        folder, "xai_subjects", network=NETWORK, method="integratedgradients", target="patient"
    ).exists()


def test_device_flag_is_the_registry_option(capsys):
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--device DEVICE Torch device for the CNN and its explanations" in text
    assert "config: [run] device" in text


def test_the_python_function_writes_rsxai_toml_as_the_command_does(folder, tmp_path, monkeypatch):
    """`explain_output_folder(config=...)` leaves the folder as `rsxai explain` does."""
    from rsxai import outputs
    from rsxai.exceptions import InputError
    from rsxai.stages import explain_output_folder

    twin = tmp_path / "twin"
    shutil.copytree(folder, twin)
    toml = output_path(folder, "config")
    given = load_config_file(toml)
    # A failed run leaves rsxai.toml as it was.
    before = toml.read_bytes()
    bad_layer = resolve_config(given, EXPLAIN_FLAGS | {"explain.target_layer": "blocks.9.act"})
    with pytest.raises(InputError, match=r"blocks\.9\.act"):
        explain_output_folder(folder, config=bad_layer)
    assert toml.read_bytes() == before
    # A successful one records the options given...
    explain_output_folder(folder, config=resolve_config(given, EXPLAIN_FLAGS))
    written = load_config_file(toml)
    assert written["explain"]["ig_steps"] == 5 and written["explain"]["sanity_checks"] is False
    assert written["explain"]["methods"] == ["integrated_gradients"]
    assert written["classify"] == given["classify"]  # the run's options are kept
    # ...exactly as the command does, which writes rsxai.toml once, not twice.
    toml_writes = []
    atomic_path = outputs.atomic_path

    def counting_atomic_path(path):
        if Path(path).name == toml.name:
            toml_writes.append(path)
        return atomic_path(path)

    monkeypatch.setattr(outputs, "atomic_path", counting_atomic_path)
    assert main(["explain", str(twin), *FAST]) == 0
    assert len(toml_writes) == 1
    assert output_path(twin, "config").read_bytes() == toml.read_bytes()
