"""Resume after a crash, and determinism, of ``rsxai run`` on a tiny simulated cohort.

Every run is a separate ``python -m rsxai.cli run`` process, as a user's would be:

- ``reference_run``: one uninterrupted run to the end (report included);
- ``resumed_run``: the same command in another folder, SIGKILLed inside each
  stage in turn (the kill lands after the stage has started and before its
  marker exists; most kills land after the stage wrote some of its outputs),
  then once more to the end;
- ``config_run``: a third folder, from the reference's ``rsxai.toml``
  (``--config``) with ``--stop-after explain`` (the report, compared above,
  costs time), uninterrupted: the same seed and configuration.

What may legitimately differ between two runs, and is compared without it:

- ``rsxai.log``: timestamps (and a resumed folder's log holds every attempt);
- ``provenance.json``: ``started``, ``finished`` and the ``stages`` timings and
  statuses (``reused`` after a resume); for ``config_run``, ``command`` and
  the ``stop_after`` option (also in ``rsxai.toml``), and it has no report;
- ``summary.json``: the timings of :data:`SUMMARY_TIMINGS`;
- ``.rsxai/stages/*.json``: the ``timing`` of each stage marker;
- ``report.html``: the output folder's absolute path and the finishing time in
  its header (its figures and tables must be identical);
- ``*.safetensors`` fold weights: same tensors and metadata, but safetensors
  writes its metadata map in a random order (safetensors issue #584), so the
  bytes differ; see :func:`test_fold_weight_files_are_byte_identical`.

Every other file, NIfTI, TSV, JSON (metrics included), the input checksum
cache and the internal ``.npy`` of preprocessing, must be byte-identical.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from rsxai.cli import build_parser
from rsxai.config import STAGES, load_config_file, resolve_config
from rsxai.outputs import PARTIAL_MARK, atomic_path, file_checksum, remove_partial_files
from rsxai.simulate import simulate_cohort

pytestmark = pytest.mark.slow

# Cheap settings; every stage and every seeded step still runs (ICA restarts,
# permutations, CNN training, SmoothGrad noise, sanity checks, faithfulness
# sampling). 10 subjects x 60 volumes are too few for the templates to reach
# the default min_r, hence --min-template-r -1: the test needs a network
# chosen, not a good one.
FLAGS = [
    "--voxel-size", "6", "--n-components", "6", "--ica-restarts", "2",
    "--min-template-r", "-1", "--networks", "visual",
    "--n-permutations", "200", "--min-per-group", "5",
    "--cv-folds", "3", "--cnn-epochs", "2", "--cnn-width", "4", "--baseline-permutations", "9",
    "--explain-methods", "smoothgrad", "gradcam++", "--explain-targets", "predicted",
    "--smoothgrad-samples", "2", "--n-sanity-subjects", "2",
    "--n-faithfulness-subjects", "2", "--faithfulness-steps", "3",
    "-q",
]  # fmt: skip
N_SUBJECTS = 10
RUN_STAGES = tuple(stage for stage in STAGES if stage != "report")

# When to SIGKILL a run inside each stage: after ``count`` files matching
# ``glob`` were written by this run (partial outputs on disk), or, when the
# stage writes everything within milliseconds of its end, once the log shows
# ``log`` (ICA: as the stage starts; classify: in the middle of the
# cross-validation, before any output). A kill that misses (the stage finished
# first) is retried with RETRY_TRIGGERS, else as soon as the stage starts.
PREPROCESSED = ".rsxai/work/preprocess-*/sub-*.npy"
KILL_TRIGGERS = {
    "preprocess": {"glob": PREPROCESSED, "count": 4},
    "ica": {"log": "Stage ica: running."},
    "dual_regression": {"glob": "sub-*/sub-*_desc-dr_timeseries.tsv", "count": 3},
    "stats": {"glob": "stats/*_statmap.nii.gz", "count": 1},
    "classify": {"log": "classify: repeat 0 fold 1 "},
    "explain": {"glob": "explanations/network-*/desc-subjects_order.tsv", "count": 1},
}
RETRY_TRIGGERS = {"preprocess": {"glob": PREPROCESSED, "count": 1}}
RUN_TIMEOUT_S = 300

PROVENANCE_TIMINGS = ("started", "finished", "stages")
#: Where a run ran, which two runs in two folders cannot share.
PROVENANCE_PLACE = ("working_directory", "output_dir")


# ----------------------------------------------------------------------------- running rsxai
def _command(bids_root: Path, *extra: str) -> list[str]:
    # The output folder is always "out" relative to the working directory, so
    # that the command recorded in provenance.json is the same for every run.
    return [sys.executable, "-m", "rsxai", "run", str(bids_root), "out", *extra]


def _run(workdir: Path, command: list[str]) -> Path:
    """Run ``command`` in ``workdir`` to the end; return the output folder."""
    workdir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert result.returncode == 0, result.stderr
    return workdir / "out"


def _marker(out: Path, stage: str) -> Path:
    return out / ".rsxai" / "stages" / f"{stage}.json"


def _log_size(out: Path) -> int:
    log = out / "rsxai.log"
    return log.stat().st_size if log.exists() else 0


def _new_log(out: Path, offset: int) -> str:
    log = out / "rsxai.log"
    if not log.exists():
        return ""
    with open(log, encoding="utf-8") as handle:
        handle.seek(offset)
        return handle.read()


def _fresh_files(out: Path, pattern: str, since_ns: int) -> list[Path]:
    """Files matching ``pattern`` written since ``since_ns`` (a run's start)."""
    fresh = []
    for path in out.glob(pattern):
        try:
            if path.stat().st_mtime_ns >= since_ns:
                fresh.append(path)
        except FileNotFoundError:  # replaced while we looked
            continue
    return fresh


def _run_and_kill(workdir: Path, command: list[str], stage: str, trigger: dict) -> dict:
    """Start ``command``; SIGKILL it as soon as ``trigger`` fires inside ``stage``.

    Returns
    -------
    dict
        ``log``: what the killed run added to rsxai.log; ``trigger``: what fired.
    """
    out = workdir / "out"
    offset = _log_size(out)
    started_ns = time.time_ns() - 50_000_000  # file systems stamp with a coarse clock
    with ExitStack() as stack:
        stderr = stack.enter_context(open(workdir / f"stderr-{stage}.txt", "w"))
        process = subprocess.Popen(
            command,
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its own process group: the kill reaches any worker
        )
        deadline = time.monotonic() + RUN_TIMEOUT_S
        fired = None
        try:
            while fired is None:
                if process.poll() is not None:
                    message = (workdir / f"stderr-{stage}.txt").read_text()
                    pytest.fail(
                        f"the run ended (code {process.returncode}) before the kill trigger "
                        f"{trigger} of stage {stage}:\n{message}"
                    )
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"no kill trigger {trigger} in stage {stage} within the time limit"
                    )
                if "log" in trigger and trigger["log"] in _new_log(out, offset):
                    fired = f"log line {trigger['log']!r}"
                elif "glob" in trigger:
                    found = _fresh_files(out, trigger["glob"], started_ns)
                    if len(found) >= trigger["count"]:
                        fired = f"{len(found)} new {trigger['glob']}"
                if fired is None:
                    time.sleep(0.005)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL
    return {"log": _new_log(out, offset), "trigger": fired}


def _preprocessed(out: Path) -> dict[str, int]:
    """Each finished preprocessed subject file -> its mtime (ns): unchanged unless rewritten."""
    return {path.name: path.stat().st_mtime_ns for path in out.glob(PREPROCESSED)}


def _killed_inside(out: Path, stage: str) -> bool:
    """The kill landed after ``stage`` started and before it was finished."""
    if _marker(out, stage).exists():
        return False
    # A kill after the last subject but before the marker leaves nothing to resume.
    return stage != "preprocess" or len(_preprocessed(out)) < N_SUBJECTS


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return simulate_cohort(
        tmp_path_factory.mktemp("resume") / "data",
        n_patients=N_SUBJECTS // 2,
        n_controls=N_SUBJECTS // 2,
        n_volumes=60,
        voxel_size=6.0,
        seed=3,
        n_jobs=2,
        progress=False,
    )


@pytest.fixture(scope="module")
def reference_run(cohort, tmp_path_factory) -> Path:
    """One uninterrupted run to the end."""
    return _run(tmp_path_factory.mktemp("reference"), _command(cohort.bids_root, *FLAGS))


@pytest.fixture(scope="module")
def resumed_run(cohort, tmp_path_factory) -> dict:
    """The same command, killed inside each stage in turn, then run to the end.

    Before each kill the folder is copied; when a kill misses (the stage was
    already finished), the copy is put back and the run killed again as soon as
    the stage starts.
    """
    workdir = tmp_path_factory.mktemp("resumed")
    out = workdir / "out"
    command = _command(cohort.bids_root, *FLAGS)
    kills = {}
    for stage in RUN_STAGES:
        snapshot = workdir.parent / f"{workdir.name}-snapshot"
        if out.exists():
            shutil.copytree(out, snapshot, symlinks=True)  # copy2: mtimes kept
        kill = _run_and_kill(workdir, command, stage, KILL_TRIGGERS[stage])
        if not _killed_inside(out, stage):
            shutil.rmtree(out)
            if snapshot.exists():
                shutil.copytree(snapshot, out, symlinks=True)
            retry = RETRY_TRIGGERS.get(stage, {"log": f"Stage {stage}: running."})
            kill = _run_and_kill(workdir, command, stage, retry)
            assert _killed_inside(out, stage), f"no kill landed inside stage {stage}"
        shutil.rmtree(snapshot, ignore_errors=True)
        kill["preprocessed_after"] = _preprocessed(out)
        kill["partial_files"] = [str(p.relative_to(out)) for p in _partial_files(out)]
        kill["markers"] = sorted(p.stem for p in (out / ".rsxai" / "stages").glob("*.json"))
        kills[stage] = kill
    offset = _log_size(out)
    _run(workdir, command)
    return {"out": out, "kills": kills, "final_log": _new_log(out, offset)}


@pytest.fixture(scope="module")
def config_run(reference_run, cohort, tmp_path_factory) -> Path:
    """A run from the reference's rsxai.toml, into another folder, up to the last stage.

    The report (compared in the resume test) is left out to save time.
    """
    toml = reference_run / "rsxai.toml"
    return _run(
        tmp_path_factory.mktemp("from-config"),
        _command(cohort.bids_root, "--config", str(toml), "--stop-after", "explain", "-q"),
    )


# ----------------------------------------------------------------------------- comparing folders
def _partial_files(out: Path) -> list[Path]:
    return [p for p in out.rglob(f"*{PARTIAL_MARK}.*") if p.is_file()]


def _files(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


def _provenance_without_timings(out: Path, *, same_command: bool) -> dict:
    provenance = json.loads((out / "provenance.json").read_text())
    for key in PROVENANCE_TIMINGS + PROVENANCE_PLACE + (() if same_command else ("command",)):
        del provenance[key]
    if not same_command:
        del provenance["configuration"]["run"]["stop_after"]
    return provenance


def _marker_without_timing(path: Path) -> dict:
    marker = json.loads(path.read_text())
    del marker["timing"]
    return marker


def _report_without_run_details(out: Path) -> str:
    html = (out / "report.html").read_text(encoding="utf-8")
    html = html.replace(str(out.resolve()), "OUT")
    return re.sub(r"run finished [0-9T:+-]+", "run finished WHEN", html)


def _safetensors_equal(first: Path, second: Path) -> bool:
    """Same metadata and tensors (names, dtypes, shapes, values), whatever the byte order."""
    from safetensors import safe_open

    contents = []
    for path in (first, second):
        with safe_open(str(path), framework="np") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
            contents.append((handle.metadata(), tensors))
    (meta_a, tensors_a), (meta_b, tensors_b) = contents
    return (
        meta_a == meta_b
        and tensors_a.keys() == tensors_b.keys()
        and all(
            tensors_a[k].dtype == tensors_b[k].dtype and np.array_equal(tensors_a[k], tensors_b[k])
            for k in tensors_a
        )
    )


def _assert_same_results(first: Path, second: Path, *, same_command: bool = True) -> int:
    """Assert two output folders hold the same results; return how many files were compared.

    With ``same_command=False``, the second run was started from the first's
    rsxai.toml with ``--stop-after explain``: no report, and only that option
    may differ in the configuration.
    """
    files = _files(first)
    # summary.json is not among them: it holds no run time, so it is byte-identical.
    special = {"rsxai.log", "provenance.json", "report.html", "rsxai.toml"}
    assert files == _files(second) | (set() if same_command else {"report.html"})
    byte_identical = 0
    for name in sorted(files):
        a, b = first / name, second / name
        if name in special:
            continue
        if name.startswith(".rsxai/stages/"):
            assert _marker_without_timing(a) == _marker_without_timing(b), name
        elif name.endswith(".safetensors"):
            assert _safetensors_equal(a, b), name
        else:
            assert file_checksum(a) == file_checksum(b), f"{name} differs"
            byte_identical += 1
    assert _provenance_without_timings(first, same_command=same_command) == (
        _provenance_without_timings(second, same_command=same_command)
    )
    configurations = [load_config_file(out / "rsxai.toml") for out in (first, second)]
    if not same_command:
        assert configurations[1]["run"].pop("stop_after") == "explain"
        del configurations[0]["run"]["stop_after"]
    assert configurations[0] == configurations[1]
    if same_command:
        assert (first / "rsxai.toml").read_bytes() == (second / "rsxai.toml").read_bytes()
        assert _report_without_run_details(first) == _report_without_run_details(second)
    return byte_identical


# ----------------------------------------------------------------------------- resume
def test_killed_inside_each_stage_and_resumed(reference_run, resumed_run):
    # One test, not four: under pytest-xdist each worker running one of them
    # would build the whole chain of runs again.
    _check_kills_landed_inside_their_stage(resumed_run["kills"])
    _check_finished_stages_were_reused(resumed_run)
    _check_preprocessed_subjects_were_kept(resumed_run["kills"])
    _check_no_unfinished_file_is_left(resumed_run)
    out = resumed_run["out"]
    compared = _assert_same_results(reference_run, out)
    nifti = [p for p in _files(out) if p.endswith(".nii.gz")]
    tsv = [p for p in _files(out) if p.endswith(".tsv")]
    assert len(nifti) > 20 and len(tsv) > 20 and compared > len(nifti) + len(tsv)


def _check_kills_landed_inside_their_stage(kills: dict) -> None:
    for index, stage in enumerate(RUN_STAGES):
        # The stages above were finished; its own marker and the ones below absent.
        assert kills[stage]["markers"] == sorted(RUN_STAGES[:index]), stage
    # Most kills fired after the stage had written some of its outputs.
    assert sum("new " in kill["trigger"] for kill in kills.values()) >= 3


def _check_finished_stages_were_reused(resumed_run: dict) -> None:
    kills = resumed_run["kills"]
    runs = [kills[stage]["log"] for stage in RUN_STAGES] + [resumed_run["final_log"]]
    for index, log in enumerate(runs):
        for done in RUN_STAGES[: max(index - 1, 0)]:
            # Finished before the previous kill: reused by every later run.
            assert f"Stage {done}: outputs up to date, reused." in log, (index, done)
            assert f"Stage {done}: running." not in log, (index, done)
        if index > 0:
            # The stage the previous run was killed in is run again.
            assert f"Stage {RUN_STAGES[index - 1]}: running." in log, index
    provenance = json.loads((resumed_run["out"] / "provenance.json").read_text())
    statuses = {stage: provenance["stages"][stage]["status"] for stage in RUN_STAGES}
    assert statuses == {stage: "reused" for stage in RUN_STAGES[:-1]} | {"explain": "computed"}
    # Reused stages report the timing of the run that computed them.
    assert all("seconds" in provenance["stages"][stage] for stage in RUN_STAGES)


def _check_preprocessed_subjects_were_kept(kills: dict) -> None:
    kept = kills["preprocess"]["preprocessed_after"]
    assert 1 <= len(kept) < N_SUBJECTS
    # The run after the kill wrote the missing subjects and left the others alone.
    after = kills["ica"]["preprocessed_after"]
    assert len(after) == N_SUBJECTS
    assert {name: after[name] for name in kept} == kept
    assert "Stage preprocess: running." in kills["ica"]["log"]


def _check_no_unfinished_file_is_left(resumed_run: dict) -> None:
    out = resumed_run["out"]
    assert _partial_files(out) == []
    # Hidden files are either rsxai's state folder or leftovers of an atomic write.
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".rsxai"]
    assert not [p for p in out.rglob(".*") if p.is_file()]
    left = sum(len(kill["partial_files"]) for kill in resumed_run["kills"].values())
    if left:  # kills that cut a write short: its file went at the next start
        logs = "".join(kill["log"] for kill in resumed_run["kills"].values())
        assert "unfinished file(s) of an interrupted run" in logs + resumed_run["final_log"]


def test_only_partial_files_of_dead_writers_are_removed(tmp_path):
    finished = tmp_path / "stats" / "map.nii.gz"
    with atomic_path(finished) as tmp:
        tmp.write_bytes(b"done")
    # Writes a SIGKILL cut short: the child process dies inside the atomic_path blocks.
    child = (
        "import os, sys; from rsxai.outputs import atomic_path\n"
        "for name in sys.argv[1:]:\n"
        "    atomic_path(name).__enter__().write_bytes(b'half')\n"
        "os.kill(os.getpid(), 9)\n"
    )
    targets = [tmp_path / "sub-01" / "maps.nii.gz", tmp_path / ".rsxai" / "work" / "sub-01.npy"]
    result = subprocess.run([sys.executable, "-c", child, *map(str, targets)], check=False)
    assert result.returncode == -signal.SIGKILL
    dead = sorted(_partial_files(tmp_path))
    assert [p.parent for p in dead] == sorted(t.parent for t in targets)
    assert all(p.name.endswith((".nii.gz", ".npy")) for p in dead)
    # This process is writing one right now: it must survive.
    live = atomic_path(tmp_path / "sub-02" / "maps.nii.gz").__enter__()
    live.write_bytes(b"being written")
    user_file = tmp_path / ".partial-notes.txt"  # not ours: no temporary file's shape
    user_file.write_text("kept")
    assert remove_partial_files(tmp_path) == dead
    assert _partial_files(tmp_path) == [live]
    assert finished.read_bytes() == b"done" and user_file.exists()
    assert not any(t.exists() for t in targets)
    live.unlink()


# ----------------------------------------------------------------------------- determinism
def test_two_runs_with_the_same_seed_give_identical_outputs(reference_run, config_run):
    compared = _assert_same_results(reference_run, config_run, same_command=False)
    assert compared > 50
    # summary.json was compared byte for byte: the run times are in provenance.json,
    # with their stage, and in no summary field.
    for out in (reference_run, config_run):
        stages = json.loads((out / "provenance.json").read_text())["stages"]
        assert len(stages["classify"]["feature_seconds"]) == 3  # fold scope: one per fold
        parts = stages["explain"]["networks"]["visual"]
        assert {"attribution", "group_maps", "sanity_checks", "faithfulness"} <= set(parts)
        assert all(seconds >= 0 for seconds in parts.values())
        assert "seconds" not in (out / "summary.json").read_text()
    assert len(list(config_run.rglob("*.safetensors"))) == 3  # one CNN per fold
    for name in ("model-cnn_metrics.json", "model-logistic_metrics.json"):
        path = f"classification/network-visual/{name}"
        assert (reference_run / path).read_bytes() == (config_run / path).read_bytes()


def test_fold_weight_files_are_written_byte_identically(reference_run, tmp_path):
    from rsxai.cnn import CNNClassifier
    from rsxai.grid import Grid

    mask = Grid.from_img(reference_run / "group" / "desc-brain_mask.nii.gz").mask
    weights = next((reference_run / "classification").rglob("*.safetensors"))
    model = CNNClassifier.from_weights(weights, mask, device="cpu")
    copies = [model.save_weights(tmp_path / f"copy-{i}.safetensors") for i in range(3)]
    # The content is the same (checked first, so that a failure below is about bytes only).
    assert all(_safetensors_equal(weights, copy) for copy in copies)
    assert len({copy.read_bytes() for copy in copies}) == 1


def test_provenance_records_what_repeats_the_run(reference_run, cohort):
    provenance = json.loads((reference_run / "provenance.json").read_text())
    command = provenance["command"]
    assert command == ["rsxai", "run", str(cohort.bids_root), "out", *FLAGS]
    assert provenance["random_seed"] == 0
    assert provenance["output_dir"] == str(reference_run.resolve())
    assert provenance["working_directory"] == str(reference_run.parent.resolve())
    # Recorded because classify used torch: what device "auto" chose on this machine.
    assert isinstance(provenance["platform"]["cuda_available"], bool)
    assert provenance["input"] == str(cohort.bids_root.resolve())
    for package in ("rsxai", "python", "numpy", "scipy", "nibabel", "nilearn", "torch"):
        assert provenance["versions"][package], package
    # The configuration recorded is rsxai.toml's, and what the command resolves to.
    toml = resolve_config(load_config_file(reference_run / "rsxai.toml"))
    assert provenance["configuration"] == toml.to_dict()
    args = build_parser().parse_args(command[1:])
    flags = {key: value for key, value in vars(args).items() if "." in key}
    assert resolve_config(None, flags).to_dict() == provenance["configuration"]
    bolds = sorted(cohort.fmriprep_dir.glob("sub-*/func/*_bold.nii.gz"))
    assert len(bolds) == N_SUBJECTS
    inputs = [*bolds, *_other_inputs(cohort)]  # BOLD, confounds and brain masks
    assert len(inputs) == 3 * N_SUBJECTS
    assert provenance["input_checksums"] == {str(p.resolve()): file_checksum(p) for p in inputs}


def _other_inputs(cohort) -> list[Path]:
    return [
        p.resolve()
        for pattern in ("*_desc-confounds_timeseries.tsv", "*_desc-brain_mask.nii.gz")
        for p in cohort.fmriprep_dir.glob(f"sub-*/func/{pattern}")
    ]


def test_recorded_command_keeps_preprocessing_and_another_seed_changes_ica(
    reference_run, tmp_path
):
    # The command of provenance.json, with another seed, in a copy of the folder:
    # preprocessing draws nothing at random and is reused (the recorded command
    # gives the same key); group ICA is seeded and changes.
    workdir = tmp_path / "copy"
    out = workdir / "out"
    shutil.copytree(reference_run, out, symlinks=True)
    components = out / "group" / "desc-ica_components.nii.gz"
    mask = out / "group" / "desc-brain_mask.nii.gz"
    first, mask_bytes = np.asarray(nib.load(components).dataobj), mask.read_bytes()
    recorded = json.loads((reference_run / "provenance.json").read_text())["command"]
    extra = ["--random-seed", "1", "--stop-after", "ica"]
    _run(workdir, [sys.executable, "-m", "rsxai", *recorded[1:], *extra])
    stages = json.loads((out / "provenance.json").read_text())["stages"]
    assert stages["preprocess"]["status"] == "reused"
    assert stages["ica"]["status"] == "computed"
    second = np.asarray(nib.load(components).dataobj)
    assert first.shape == second.shape and not np.array_equal(first, second)
    assert mask.read_bytes() == mask_bytes


def test_ica_stage_stopped_by_labelling_keeps_the_table_to_choose_from(
    reference_run, cohort, tmp_path, capsys
):
    # No component reaches min_r: the run stops with an input error (not a
    # traceback), after writing the maps and the table the message points to.
    from rsxai.cli import EXIT_INPUT_ERROR, main

    out = tmp_path / "out"
    shutil.copytree(reference_run, out, symlinks=True)
    table = out / "group" / "desc-ica_components.tsv"
    table.unlink()
    flags = [*FLAGS, "--min-template-r", "0.99", "--stop-after", "ica"]
    assert main(["run", str(cohort.bids_root), str(out), *flags]) == EXIT_INPUT_ERROR
    err = capsys.readouterr().err
    assert "--force-component visual=INDEX" in err and "Traceback" not in err
    rows = table.read_text().splitlines()
    assert rows[0].split("\t")[:3] == ["component", "network", "r"]
    assert len(rows) == 1 + 6  # every component, to choose one by hand
    # The table and maps were overwritten: the reference's marker, which vouched for
    # them, is gone, so a run with the reference's settings does ICA again.
    assert not _marker(out, "ica").exists()
    assert _marker(out, "preprocess").exists()
