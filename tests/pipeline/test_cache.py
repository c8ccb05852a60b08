"""Work folders of earlier settings are removed once a stage is done with the new ones."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from rsxai.cli import main
from rsxai.config import resolve_config
from rsxai.pipeline import IMPLEMENTED_STAGES, stage_key
from rsxai.pipeline.cache import remove_stale_work_folders
from rsxai.simulate import simulate_cohort

FLAGS = [
    "--voxel-size",
    "6",
    "--min-per-group",
    "3",
    "--min-volumes",
    "30",
    "--stop-after",
    "preprocess",
    "-q",
]
#: Two band-passes: another low-pass cut-off is another preprocessing key.
FIRST, SECOND, THIRD = ["--low-pass", "0.1"], ["--low-pass", "0.08"], ["--low-pass", "0.06"]


@pytest.fixture(scope="module")
def cohort_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("work_folders") / "data"
    simulate_cohort(
        root, n_patients=3, n_controls=3, n_volumes=40, voxel_size=6.0, seed=2, progress=False
    )
    return root


def _run(cohort_root: Path, out: Path, options: list[str]) -> int:
    return main(["run", str(cohort_root), str(out), *FLAGS, *options])


def _work_folders(out: Path) -> list[str]:
    return sorted(p.name for p in (out / ".rsxai" / "work").iterdir())


def _preprocess_key(out: Path) -> str:
    return json.loads((out / ".rsxai" / "stages" / "preprocess.json").read_text())["key"]


def _preprocessed(out: Path) -> dict[str, str]:
    """Digest of each subject's preprocessed data, by subject."""
    (folder,) = (out / ".rsxai" / "work").iterdir()
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.npy")}


def test_only_the_current_settings_work_folder_is_kept(cohort_root, tmp_path, monkeypatch):
    out, reference = tmp_path / "out", tmp_path / "reference"
    assert _run(cohort_root, out, FIRST) == 0
    first_key = _preprocess_key(out)
    assert _work_folders(out) == [f"preprocess-{first_key}"]
    assert len(_preprocessed(out)) == 6

    # A preprocessing that fails part-way keeps the earlier folder (a resumed run
    # may still need it): nothing is removed before the stage is done.
    from rsxai.stages import preprocess as preprocess_stage

    def failing(runs, grid, target, tr, options):
        raise RuntimeError("killed")

    monkeypatch.setattr(preprocess_stage, "_preprocess_one", failing)
    assert _run(cohort_root, out, SECOND) != 0
    assert f"preprocess-{first_key}" in _work_folders(out)
    monkeypatch.undo()

    assert _run(cohort_root, out, SECOND) == 0
    second_key = _preprocess_key(out)
    assert second_key != first_key
    assert _work_folders(out) == [f"preprocess-{second_key}"]
    log = (out / "rsxai.log").read_text()
    assert f"removed 1 work folder(s) of earlier settings (preprocess-{first_key})" in log
    assert " kB freed" in log or " MB freed" in log
    # The kept data are those of a fresh run with the same settings.
    assert _run(cohort_root, reference, SECOND) == 0
    assert _preprocessed(out) == _preprocessed(reference)

    # Going back to earlier settings recomputes them and removes the other folder too.
    assert _run(cohort_root, out, FIRST) == 0
    assert _work_folders(out) == [f"preprocess-{first_key}"]
    assert _preprocessed(out) != _preprocessed(reference)


def test_reused_stage_removes_folders_left_by_an_interrupted_run(cohort_root, tmp_path):
    out = tmp_path / "out"
    assert _run(cohort_root, out, THIRD) == 0
    key = _preprocess_key(out)
    before = _preprocessed(out)
    # What a run with other settings, killed mid-preprocessing, leaves behind
    # (its marker is never written), and folders rsxai did not name: kept.
    work = out / ".rsxai" / "work"
    (work / "preprocess-0123456789abcdef").mkdir()
    (work / "preprocess-0123456789abcdef" / "sub-01.npy").write_bytes(b"x" * 2500)
    for foreign in ("preprocess-mine", "notes"):
        (work / foreign).mkdir()
    assert _run(cohort_root, out, THIRD) == 0
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["stages"]["preprocess"]["status"] == "reused"
    assert _work_folders(out) == ["notes", f"preprocess-{key}", "preprocess-mine"]
    assert _preprocessed_of(work / f"preprocess-{key}") == before


def _preprocessed_of(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.npy")}


def test_remove_stale_work_folders_touches_only_its_stage(tmp_path, caplog):
    work = tmp_path / ".rsxai" / "work"
    names = ["preprocess-aaaaaaaaaaaaaaaa", "preprocess-bbbbbbbbbbbbbbbb", "ica-cccccccccccccccc"]
    for name in names:
        (work / name).mkdir(parents=True)
        (work / name / "data.npy").write_bytes(b"0" * 1500)
    # The command line stops the rsxai logger's propagation: listen to it directly.
    logger = logging.getLogger("rsxai")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="rsxai"):
            removed = remove_stale_work_folders(tmp_path, "preprocess", "aaaaaaaaaaaaaaaa")
    finally:
        logger.removeHandler(caplog.handler)
    assert removed == [work / "preprocess-bbbbbbbbbbbbbbbb"]
    assert sorted(p.name for p in work.iterdir()) == [names[2], names[0]]
    assert "1.5 kB freed" in caplog.text
    # A stage with no keyed work folder (none is registered for ica) is left alone.
    assert remove_stale_work_folders(tmp_path, "ica", "dddddddddddddddd") == []
    assert (work / names[2]).exists()
    # Nothing stale: nothing removed, nothing logged.
    caplog.clear()
    assert remove_stale_work_folders(tmp_path, "preprocess", "aaaaaaaaaaaaaaaa") == []
    assert "freed" not in caplog.text


def test_preprocessed_cache_of_earlier_code_is_not_reused():
    # The cache no longer holds z-scored series (dual regression keeps each
    # voxel's amplitude): folders and markers of the z-scored era have the key
    # of revision 0 and must not be taken for today's data.
    stage = next(stage for stage in IMPLEMENTED_STAGES if stage.name == "preprocess")
    assert stage.revision >= 1
    context = SimpleNamespace(config=resolve_config(), stage_keys={})
    inputs = {"data": "d", "design": "g"}
    earlier = stage_key(dataclasses.replace(stage, revision=0), context, inputs)
    assert stage_key(stage, context, inputs) != earlier
    # dual_regression options change neither the preprocessing nor its key.
    other = SimpleNamespace(
        config=resolve_config(overrides={"dual_regression.variance_normalise": True}),
        stage_keys={},
    )
    assert stage_key(stage, other, inputs) == stage_key(stage, context, inputs)
