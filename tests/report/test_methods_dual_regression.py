"""The methods text says which data dual regression was run on."""

from __future__ import annotations

import re

import pytest

from rsxai.outputs import output_path
from rsxai.report import ReportFolder
from rsxai.report.methods import methods_section
from tests.fixtures.report import make_fabricated_output


@pytest.fixture(scope="module")
def fabricated(tmp_path_factory):
    return make_fabricated_output(tmp_path_factory.mktemp("methods") / "out")


def _methods(out, line: str) -> str:
    """The methods text of ``out`` with its ``variance_normalise`` line replaced by ``line``."""
    path = output_path(out, "config")
    text = path.read_text(encoding="utf-8")
    section = r"(\[dual_regression\]\ndes_norm = \w+\n)(variance_normalise = \w+\n)?"
    path.write_text(re.sub(section, lambda m: m[1] + line, text), encoding="utf-8")
    return re.sub(r"<[^>]+>", "", methods_section(ReportFolder(out)))


@pytest.mark.parametrize(
    ("line", "said", "not_said"),
    [
        (
            "variance_normalise = false\n",
            [
                "scaled by one factor per run to a median intensity of 10,000",
                "as FSL's dual_regression, on the cleaned series not variance-normalised",
                "maps carry each voxel's amplitude",
            ],
            ["z-scored in time", "z-scored voxel by voxel", "on the z-scored series"],
        ),
        (
            "variance_normalise = true\n",
            [
                "scaled by one factor per run to a median intensity of 10,000",
                "on the series z-scored voxel by voxel",
            ],
            ["as FSL's dual_regression", "FSL semantics"],
        ),
        # Outputs made before the option existed: their series were z-scored per run.
        ("", ["then z-scored in time", "on the z-scored series"], ["10,000", "FSL semantics"]),
    ],
)
def test_methods_say_what_dual_regression_ran_on(fabricated, line, said, not_said):
    text = _methods(fabricated, line)
    for words in said:
        assert words in text
    for words in not_said:
        assert words not in text
