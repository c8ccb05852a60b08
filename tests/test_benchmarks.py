"""Smoke test of the benchmark harness: the signal-cleaning comparison on tiny data."""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/ is a top-level folder of the repository, not part of the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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
