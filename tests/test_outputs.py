"""Atomic writes, the output-name registry, summary and checksums."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rsxai._version import __version__
from rsxai.outputs import (
    Summary,
    atomic_path,
    file_checksum,
    input_checksums,
    output_path,
    write_dataset_description,
    write_json,
    write_tsv,
)


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "map.nii.gz"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.nii.gz"]


def test_atomic_path_replaces_on_success(tmp_path):
    target = tmp_path / "sub" / "table.tsv"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert len(list(target.parent.iterdir())) == 1


def test_written_files_get_the_mode_open_would_give(tmp_path):
    # mkstemp makes private 0o600 files; results on a shared cluster must be readable
    # by the group as any file the user writes (the umask decides, here 0o027).
    import os
    import subprocess
    import sys

    script = (
        "import os, sys; os.umask(0o027)\n"
        "from rsxai.outputs import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp: tmp.write_text('x')\n"
    )
    target = tmp_path / "table.tsv"
    subprocess.run([sys.executable, "-c", script, str(target)], check=True)
    assert os.stat(target).st_mode & 0o777 == 0o640


def test_json_refuses_nan_and_writes_numpy(tmp_path):
    import numpy as np

    path = write_json(tmp_path / "a.json", {"x": np.float32(1.5), "v": np.arange(3)})
    assert json.loads(path.read_text()) == {"x": 1.5, "v": [0, 1, 2]}
    assert json.loads(write_json(tmp_path / "b.json", {"x": float("nan")}).read_text()) == {
        "x": None
    }


def test_tsv_uses_bids_missing_values(tmp_path):
    path = write_tsv(tmp_path / "t.tsv", pd.DataFrame({"a": [1.0, None], "b": ["x", "y"]}))
    assert path.read_text().splitlines() == ["a\tb", "1\tx", "n/a\ty"]


def test_dataset_description_is_bids_derivative(tmp_path):
    description = json.loads(write_dataset_description(tmp_path, source=str(tmp_path)).read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0] == {
        "Name": "rsxai",
        "Version": __version__,
        "Description": description["GeneratedBy"][0]["Description"],
    }


def test_summary_keeps_earlier_keys(tmp_path):
    Summary(tmp_path).update("subjects", {"n": 4})
    Summary(tmp_path).update("networks", {"visual": 2})
    data = json.loads(output_path(tmp_path, "summary").read_text())
    assert data == {"rsxai_version": __version__, "subjects": {"n": 4}, "networks": {"visual": 2}}


def test_checksums_are_cached_until_the_file_changes(tmp_path):
    data = tmp_path / "bold.nii.gz"
    data.write_bytes(b"abc")
    cache = tmp_path / "cache.json"
    first = input_checksums([data], cache)
    assert first[str(data.resolve())] == file_checksum(data)
    assert first[str(data.resolve())].startswith("sha256:ba7816bf")  # sha256("abc")
    data.write_bytes(b"abcd")
    second = input_checksums([data], cache)
    assert second[str(data.resolve())] == file_checksum(data) != first[str(data.resolve())]


def test_unknown_output_name():
    with pytest.raises(KeyError, match="Unknown output name"):
        output_path(".", "nothing")
