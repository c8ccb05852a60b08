"""Faults of the machine (full disk, quota, read-only folder) are one clear line, not bugs."""

from __future__ import annotations

import errno
import os
import pickle
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
from joblib import Parallel, delayed

from rsxai.cli import EXIT_INPUT_ERROR, EXIT_INTERNAL_ERROR, EXIT_MACHINE_FAULT, main
from rsxai.cli import commands as cli
from rsxai.exceptions import MachineFault
from rsxai.outputs import PARTIAL_MARK, atomic_path
from rsxai.simulate import simulate_cohort

FLAGS = ["--voxel-size", "6", "--min-per-group", "3", "--min-volumes", "30", "-q"]


@pytest.fixture(scope="module")
def cohort_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("machine_faults") / "data"
    simulate_cohort(
        root, n_patients=3, n_controls=3, n_volumes=40, voxel_size=6.0, seed=3, progress=False
    )
    return root


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_full_disk_in_preprocess_is_one_line_and_a_rerun_resumes(
    cohort_root, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "out"
    real_save, saved = np.save, []

    def disk_fills_up(file, array, *args, **kwargs):
        if len(saved) == 2:
            Path(file).write_bytes(b"\x93NUMPY half")  # what a full disk leaves
            # numpy's own words for a short write: no errno.
            raise OSError("2857700 requested and 2138080 written")
        saved.append(Path(file).name)
        return real_save(file, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", disk_fills_up)
    code = main(["run", str(cohort_root), str(out), "--stop-after", "preprocess", *FLAGS])
    line = _one_line(capsys.readouterr().err)
    assert code == EXIT_MACHINE_FAULT
    assert "no space left on device while writing" in line
    assert "free space and run again (finished work is kept)" in line
    (work,) = (out / ".rsxai" / "work").iterdir()
    done = sorted(work.glob("*.npy"))
    assert len(done) == 2
    assert line.split("while writing ", 1)[1].split(";")[0].startswith(str(work / "sub-"))
    assert PARTIAL_MARK not in line
    assert not [p for p in out.rglob("*") if PARTIAL_MARK in p.name]  # nothing half-written
    assert not (out / ".rsxai" / "stages" / "preprocess.json").exists()

    monkeypatch.undo()
    kept = {p: p.stat().st_mtime_ns for p in done}
    assert main(["run", str(cohort_root), str(out), "--stop-after", "preprocess", *FLAGS]) == 0
    assert len(list(work.glob("*.npy"))) == 6
    assert {p: p.stat().st_mtime_ns for p in done} == kept  # resumed, not redone
    assert (out / ".rsxai" / "stages" / "preprocess.json").exists()


def _worker_write(path: str, code: int, through_atomic_path: bool) -> None:
    if through_atomic_path:
        with atomic_path(path):
            raise OSError(code, os.strerror(code))
    raise OSError(code, os.strerror(code), path)


@pytest.mark.parametrize(
    ("code", "through_atomic_path", "words"),
    [
        (errno.ENOSPC, False, "no space left on device while writing"),
        (errno.EDQUOT, True, "disk quota exceeded while writing"),
    ],
)
def test_fault_in_a_worker_process_is_one_line(
    tmp_path, capsys, monkeypatch, code, through_atomic_path, words
):
    target = tmp_path / "out" / "sub-01.npy"

    def in_workers(args, argv):
        Parallel(n_jobs=2)(
            delayed(_worker_write)(str(target), code, through_atomic_path) for _ in range(2)
        )

    monkeypatch.setattr(cli, "_run_command", in_workers)
    assert main(["run", str(tmp_path), str(tmp_path / "out"), "-q"]) == EXIT_MACHINE_FAULT
    line = _one_line(capsys.readouterr().err)
    assert line == f"rsxai: error: {words} {target}; " + line.split("; ", 1)[1]
    assert line.endswith("and run again (finished work is kept).")


def test_machine_fault_pickles_and_other_errors_are_no_fault():
    fault = MachineFault("/out/a.tsv", errno.EROFS)
    again = pickle.loads(pickle.dumps(fault))
    assert (again.path, again.errno, str(again)) == ("/out/a.tsv", errno.EROFS, str(fault))
    assert str(fault).startswith("read-only file system while writing /out/a.tsv; choose")
    assert MachineFault.from_os_error(FileNotFoundError(errno.ENOENT, "gone", "x")) is None
    assert MachineFault.from_os_error(OSError("something else")) is None


def _refuse_reading(*args, **kwargs):
    raise AssertionError("the cohort was read before the output folder was checked")


def test_read_only_file_system_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    real_mkstemp = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == out:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(out))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr("rsxai.pipeline.runner.load_cohort", _refuse_reading)
    code = main(["run", str(tmp_path), str(out), "-q"])
    line = _one_line(capsys.readouterr().err)
    assert code == EXIT_INPUT_ERROR
    assert line.startswith(f"rsxai: error: OUTPUT_DIR {out} is not writable: ")
    assert "Read-only file system" in line
    assert list(out.iterdir()) == []


def test_read_only_folder_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)  # 0o550
    try:
        if os.access(parent, os.W_OK):
            pytest.skip("permission bits do not stop this user (root) from writing")
        monkeypatch.setattr("rsxai.pipeline.runner.load_cohort", _refuse_reading)
        code = main(["run", str(tmp_path), str(parent / "out"), "-q"])
        line = _one_line(capsys.readouterr().err)
        assert code == EXIT_INPUT_ERROR
        assert (
            f"OUTPUT_DIR {parent / 'out'} is not writable (it would be made in {parent})" in line
        )
    finally:
        parent.chmod(0o755)


def test_bug_log_falls_back_to_the_temporary_folder(tmp_path, capsys, monkeypatch):
    def broken(args, argv):
        raise ZeroDivisionError("a bug")

    out, temporary = tmp_path / "out", tmp_path / "temporary"
    temporary.mkdir()
    (out / "rsxai.log").mkdir(parents=True)  # OUT/rsxai.log cannot be opened, even by root
    monkeypatch.setattr(cli, "_run_command", broken)
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    assert main(["run", str(tmp_path), str(out), "-q"]) == EXIT_INTERNAL_ERROR
    line = _one_line(capsys.readouterr().err)
    log = Path(line.rsplit("the traceback in ", 1)[1].removesuffix("."))
    assert log.parent == temporary and log.name.startswith("rsxai-error-")
    assert "ZeroDivisionError: a bug" in log.read_text(encoding="utf-8")
