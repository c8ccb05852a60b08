"""The HTML report: every section from an output folder, errors kept in place, nothing recomputed.

Two kinds of output folder are used:

- a real one, from ``rsxai run --stop-after stats`` on a tiny simulated
  cohort, to check that the report reads what the stages really write;
- a FABRICATED one (:func:`tests.fixtures.report.make_fabricated_output`), hand-made
  files in the documented layout with chosen values, for the stages that are
  not built yet (classification, explanations) and to check that each number
  in the report is the one in the files. These values are test fixtures, not
  results.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from io import BytesIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomli_w
from PIL import Image

from rsxai.cli import main
from rsxai.exceptions import InputError
from rsxai.outputs import output_path, write_json, write_text
from rsxai.report import ReportFolder, write_report
from rsxai.report.build import build_sections
from rsxai.report.classification import classification_section
from rsxai.report.explanations import explanations_section
from rsxai.report.html import SectionNotRun
from rsxai.report.methods import methods_section
from rsxai.report.networks import ica_section
from rsxai.report.statistics import stats_section
from rsxai.simulate import simulate_cohort
from tests.fixtures.report import (
    FAKE_LOG_WARNING,
    SECTION_IDS,
    VOXEL_MM,
    embedded_images,
    make_fabricated_output,
    section_html,
    statuses,
)

#: Packages of the stages: the report reads their files, never imports them.
STAGE_PACKAGES = (
    "rsxai.preprocess",
    "rsxai.decomposition",
    "rsxai.networks",
    "rsxai.stats",
    "rsxai.classify",
    "rsxai.cnn",
    "rsxai.explain",
    "rsxai.stages",
    "rsxai.pipeline",
)


@pytest.fixture(scope="module")
def fabricated(tmp_path_factory) -> tuple[Path, str]:
    out = make_fabricated_output(tmp_path_factory.mktemp("report") / "out")
    path = write_report(out)
    return out, path.read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- fabricated tests
def _text(html: str) -> str:
    """The text a reader sees in ``html``: tags dropped, runs of white space made one space."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_every_section_renders_without_error(fabricated):
    _, html = fabricated
    sections = section_html(html)
    assert list(sections) == list(SECTION_IDS)
    assert "note note-error" not in html
    assert "could not be shown" not in html
    assert "<script" not in html.lower()
    assert set(statuses(html).values()) == {"ok"}


def test_wide_tables_fit_a_1200px_window_or_scroll_in_their_own_box(fabricated):
    _, html = fabricated
    # Every table sits alone in a box that scrolls sideways, so the page never does.
    assert html.count("<table>") == html.count('<div class="table-wrap"><table>') > 10
    style = re.search(r"<style>(.*?)</style>", html, flags=re.S).group(1)
    assert re.search(r"\.table-wrap \{[^}]*overflow-x: auto", style)
    # The metrics table, the widest: each interval or qualifier on a second line
    # (a block) under its number, and the numbers right-aligned.
    assert re.search(r"td \.detail \{[^}]*display: block", style)
    metrics = re.search(r"<table>.*?</table>", section_html(html)["classification"], re.S)
    rows = re.findall(r"<tr>(.*?)</tr>", metrics.group(0).split("<tbody>")[1], flags=re.S)
    assert len(rows) == 2  # the CNN and the SVM
    for row in rows:
        cells = re.findall(r"<td( class=\"num\")?>(.*?)</td>", row, flags=re.S)
        model, *numbers = cells
        assert model[0] == "" and all(css for css, _ in numbers)
        assert len(numbers) == 8  # 5 metrics, permutation p, binomial p, repeats
    cnn_accuracy = re.findall(r"<td class=\"num\">(.*?)</td>", rows[0])[0]
    assert cnn_accuracy == '0.732 <span class="detail">[0.61, 0.833]</span>'


def test_figures_are_embedded_and_decodable(fabricated):
    _, html = fabricated
    images = embedded_images(html)
    sections = section_html(html)
    # 4 component thumbnails + 2 networks x (glass brain + slices) in the ICA section.
    assert len(embedded_images(sections["group-ica"])) == 4 + 2 * 2
    # Visual has FWE-significant voxels: t glass brain, slices, FWE glass brain; SMN two.
    assert len(embedded_images(sections["statistics"])) == 3 + 2
    # ROC, training, 2 confusion matrices, the CNN's null distribution.
    assert len(embedded_images(sections["classification"])) == 5
    # 3 relevance maps and the faithfulness curves.
    assert len(embedded_images(sections["explanations"])) == 4
    for mime, data in images:
        if mime == "image/png":
            with Image.open(BytesIO(data)) as picture:
                assert picture.size[0] > 50 and picture.size[1] > 30
        else:
            assert ET.fromstring(data).tag.endswith("svg")
    assert "http://" not in html.replace("http://www.w3.org", "")
    assert "https://" not in html


def test_numbers_are_those_of_the_files(fabricated):
    out, html = fabricated
    sections = section_html(html)
    # Covariates by group, against a plain pandas computation.
    participants = pd.read_csv(out / "participants.tsv", sep="\t")
    for group in ("HC", "ALS"):
        ages = participants.loc[participants["group"] == group, "age"]
        assert f"{ages.mean():.3g} ± {ages.std(ddof=1):.3g}" in sections["sample"]
    assert "fabricated: too few volumes" in sections["sample"]
    # Components: stability with three decimals, the chosen networks highlighted.
    assert "0.987" in sections["group-ica"] and "0.512" in sections["group-ica"]
    assert sections["group-ica"].count('class="selected"') == 2
    # Dual regression outlier flagged.
    assert "sub-03" in sections["dual-regression"]
    assert sections["dual-regression"].count('class="flag"') == 1
    # Statistics: the significant voxel count and the cluster table.
    visual = json.loads((out / "summary.json").read_text())["stats"]["networks"]["visual"]
    n_significant = visual["patients>controls"]["n_fwe_significant_voxels"]
    assert n_significant > 0
    assert f"{n_significant} voxels" in sections["statistics"]
    assert "Intracalcarine Cortex (fabricated label)" in sections["statistics"]
    assert "No FWE-significant voxel, hence no cluster table" in sections["statistics"]
    # Classification: value and interval as written, permutation p at its floor 1/100.
    classification = _text(sections["classification"])
    assert "0.732 [0.61, 0.833]" in classification
    assert "≤ 0.01 (100 perm.)" in classification
    assert "not run" in classification  # the SVM's permutation test
    assert classification.count("0.039 (chance 0.5)") == 2
    assert "0.688 ± 0.0442 (0.656-0.719)" in classification
    assert "ROC AUC: delong" in classification
    assert "0.81 [0.66, 0.93]" in classification
    # Explanations: agreement, verdicts, localisation.
    assert "0.412" in sections["explanations"] and "3.21" in sections["explanations"]
    assert '<span class="verdict-fail">fail</span>' in sections["explanations"]
    assert '<span class="verdict-pass">pass</span>' in sections["explanations"]


def test_statistics_captions_and_methods_state_the_correction_over_contrasts(fabricated, tmp_path):
    from html import unescape

    out, html = fabricated
    # The fabricated summary has one contrast per network and no record of a family.
    assert "FWE: family-wise error over the voxels of the map" in _text(
        section_html(html)["statistics"]
    )
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    summary = json.loads((copy / "summary.json").read_text())
    summary["stats"] |= {"fwe_contrasts": ["patients>controls", "controls>patients"]}
    summary["stats"] |= {"n_networks": 2}
    write_json(output_path(copy, "summary"), summary)
    folder = ReportFolder(copy)
    statistics = unescape(_text(stats_section(folder)))
    family = (
        "over the voxels and the 2 contrasts of the network (patients>controls, "
        "controls>patients; maximum statistic over them, as randomise --corrcon)"
    )
    assert (
        f"FWE: family-wise error {family}; Bonferroni: that p also multiplied by the 2 "
        "network(s)." in statistics
    )
    assert (
        f"Clusters of FWE-significant voxels (p < 0.05, FWE {family}) with their atlas "
        "regions." in statistics
    )
    methods = unescape(_text(methods_section(folder)))
    assert (
        "Family-wise error was controlled over the voxels and the 2 contrasts of each network "
        "by the distribution of the maximum statistic over them" in methods
    )
    assert "minima Bonferroni-corrected over the 2 network(s)" in methods


def test_cohort_scope_is_called_transductive(fabricated):
    _, html = fabricated
    classification = section_html(html)["classification"]
    assert "<strong>transductive</strong>" in classification
    assert "note note-warning" in classification
    assert "transductive" in section_html(html)["methods"]


def _with_cv(fabricated, tmp_path, **cv) -> ReportFolder:
    """A copy of the fabricated folder whose metrics files have these ``cv`` entries."""
    out, _ = fabricated
    copy = tmp_path / "scoped"
    shutil.copytree(out, copy)
    for match in ReportFolder(copy).find("cls_metrics"):
        metrics = json.loads(Path(match["path"]).read_text())
        metrics["cv"] |= cv
        write_json(Path(match["path"]), metrics)
    return ReportFolder(copy)


def test_fold_scope_says_what_every_participant_touched(fabricated, tmp_path):
    folder = _with_cv(fabricated, tmp_path, cv_scope="fold")
    classification, methods = classification_section(folder), methods_section(folder)
    assert "<strong>fold</strong> (inductive)" in classification
    for text in (classification, methods):
        assert "crop box" in text and "every participant's brain mask" in text
        assert "pessimistic shift" in _text(text)
    # The cohort scope states the contrast with the fold scope's shift.
    cohort = _with_cv(fabricated, tmp_path / "cohort", cv_scope="cohort")
    assert "pessimistic shift" in _text(classification_section(cohort))
    assert "pessimistic shift" in _text(methods_section(cohort))


def test_external_maps_scope_names_imported_group_maps(fabricated, tmp_path):
    folder = _with_cv(fabricated, tmp_path, cv_scope="external maps", transductive=None)
    classification = _text(classification_section(folder))
    assert "external maps — possibly transductive" in classification
    assert "--group-maps" in classification and "melodic_IC" in classification
    assert "group maps were made outside rsxai" in _text(methods_section(folder))


def test_repeated_cv_headline_is_said_to_be_the_first_repeat(fabricated, tmp_path):
    folder = _with_cv(fabricated, tmp_path, headline="first repeat: ...", n_repeats=2)
    classification = _text(classification_section(folder))
    assert "are those of the first repeat" in classification
    assert "a stability figure" in classification
    assert "are those of the first repeat" in _text(methods_section(folder))
    # Older outputs, without the field, are not said to be what they were not.
    _, html = fabricated
    assert "first repeat" not in _text(section_html(html)["classification"])


def test_methods_cite_what_they_name(fabricated):
    _, html = fabricated
    methods = section_html(html)["methods"]
    references = re.findall(r"<li>(.*?)</li>", methods.split("References", 1)[1])
    cited = {int(n) for group in re.findall(r"\[([\d, ]+)\]", methods) for n in group.split(",")}
    assert cited == set(range(1, len(references) + 1))  # every reference cited, none missing
    for name in ("Threshold-free cluster enhancement", "Grad-CAM++", "Sanity checks"):
        assert any(name in r for r in references), name
    assert "100 permutations" in methods and "4 components" in methods


def test_warnings_section_lists_input_and_log_warnings(fabricated):
    _, html = fabricated
    warnings_html = section_html(html)["warnings"]
    assert "fabricated input warning" in warnings_html
    assert FAKE_LOG_WARNING in warnings_html
    assert "Stage ica: running." not in warnings_html  # INFO lines are not warnings


def test_find_reads_the_fields_of_registered_names(fabricated):
    out, _ = fabricated
    found = ReportFolder(out).find("xai_group", network="visual")
    triples = {(m["method"], m["target"], m["desc"]) for m in found}
    assert triples == {
        ("saliency", "predicted", "meanall"),
        ("saliency", "predicted", "tstat"),
        ("gradcampp", "predicted", "meanall"),
    }
    assert {m["model"] for m in ReportFolder(out).find("cls_metrics")} == {"cnn", "svm"}


def test_figures_are_the_same_bytes_every_time(fabricated):
    from rsxai.report.charts import training_chart
    from rsxai.report.figures import glass_brain, load_volume

    out, _ = fabricated
    img = load_volume(output_path(out, "network_map", network="visual"))
    assert glass_brain(img, "map", threshold=2.3) == glass_brain(img, "map", threshold=2.3)
    epochs = pd.read_csv(output_path(out, "cls_training", network="visual"), sep="\t")
    assert training_chart(epochs, "curves") == training_chart(epochs, "curves")


def test_an_empty_map_draws_an_empty_glass_brain(fabricated):
    # Nothing survives the display threshold: outlines on white, no block of colour.
    import nibabel as nib

    from rsxai.report.figures import glass_brain

    out, _ = fabricated
    mask = nib.load(output_path(out, "mask"))
    empty = nib.Nifti1Image(np.zeros(mask.shape, np.float32), mask.affine)
    (_, data), *_ = embedded_images(glass_brain(empty, "empty", threshold=1e-6))
    with Image.open(BytesIO(data)) as picture:
        grey = np.asarray(picture.convert("L"), dtype=float)
    assert np.mean(grey < 100) < 0.15  # brain outlines only (dark fill: ~0.8)


# ----------------------------------------------------------------------------- failures
def _small_folder(tmp_path: Path) -> Path:
    """Only the run description: sections without figures, fast to build."""
    out = tmp_path / "small"
    summary = {
        "subjects": {"n": 10, "groups": {"HC": 5, "ALS": 5}, "positive_label": "ALS"},
        "warnings": [],
    }
    write_json(output_path(out, "summary"), summary)
    write_text(output_path(out, "config"), tomli_w.dumps({"run": {"stop_after": "stats"}}))
    write_json(
        output_path(out, "provenance"),
        {"stages": {"stats": {"status": "computed"}, "classify": {"status": "not available"}}},
    )
    return out


def test_a_failing_section_keeps_the_others(tmp_path, monkeypatch):
    from rsxai.report import sample as report_sample

    out = _small_folder(tmp_path)

    def broken(folder):
        raise RuntimeError("planted failure in the sample section")

    monkeypatch.setattr(report_sample, "sample_section", broken)
    html = write_report(out).read_text(encoding="utf-8")
    sections = section_html(html)
    assert list(sections) == list(SECTION_IDS)
    assert "RuntimeError: planted failure in the sample section" in sections["sample"]
    assert "Traceback" in sections["sample"]
    assert "note note-error" not in sections["methods"]
    assert "Sample" in sections["warnings"] and "note note-error" in sections["warnings"]


def test_a_broken_file_costs_only_its_part(fabricated, tmp_path):
    out, _ = fabricated
    copy = tmp_path / "broken"
    shutil.copytree(out, copy)
    output_path(copy, "cls_metrics", network="visual", model="svm").write_text("{not json")
    output_path(copy, "xai_sanity", network="visual").write_text("no verdict column\n1\n")
    folder = ReportFolder(copy)
    classification = classification_section(folder)
    explanations = explanations_section(folder)
    assert "JSONDecodeError" in classification
    assert "0.732 [0.61, 0.833]" in _text(classification)  # the CNN next to the broken SVM
    assert "KeyError" in explanations and "verdict" in explanations
    # The rest of the explanations survived the broken sanity-check table.
    assert "Agreement with the group statistics" in explanations
    assert "Localisation of the planted effect" in explanations
    assert explanations.count("<img") == 4


def test_components_are_shown_when_no_network_was_chosen(fabricated, tmp_path):
    # As after a labelling failure: components written, no network selected, no later stage.
    out, _ = fabricated
    copy = tmp_path / "unlabelled"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("stats", "classification"))
    summary = json.loads(output_path(copy, "summary").read_text())
    for key in ("networks", "dual_regression_qc", "stats"):
        del summary[key]
    write_json(output_path(copy, "summary"), summary)
    output_path(copy, "network_selection").unlink()
    folder = ReportFolder(copy)
    ica = ica_section(folder)
    assert "force-component" in ica
    assert ica.count("Glass brain of component") == 4
    assert 'class="selected"' not in ica
    with pytest.raises(SectionNotRun, match="group statistics"):
        stats_section(folder)


def test_sections_of_stages_not_run_say_so(tmp_path):
    out = _small_folder(tmp_path)
    sections = {s.anchor: s for s in build_sections(ReportFolder(out))}
    assert sections["statistics"].status == "not run"
    assert "its outputs are not in this folder" in sections["statistics"].body
    assert sections["classification"].status == "not run"
    assert "not available in the rsxai version" in sections["classification"].body
    assert sections["explanations"].status == "not run"
    assert "--stop-after stats" in sections["explanations"].body
    assert sections["sample"].status == "ok"


def test_not_an_output_folder(tmp_path):
    with pytest.raises(InputError, match="not an rsxai output folder"):
        write_report(tmp_path)
    with pytest.raises(InputError, match="is not a folder"):
        write_report(tmp_path / "missing")


def test_report_command_prints_the_path(tmp_path, capsys):
    from rsxai.cli import main

    out = _small_folder(tmp_path)
    assert main(["report", str(out), "-q"]) == 0
    assert str((out / "report.html").resolve()) in capsys.readouterr().out


def test_report_imports_no_stage_module(tmp_path):
    out = _small_folder(tmp_path)
    code = (
        "import json, sys; from rsxai.report.build import write_report; "
        f"write_report({str(out)!r}); "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('rsxai'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert loaded, result.stderr
    assert not [m for m in loaded if m.startswith(STAGE_PACKAGES)]


# ----------------------------------------------------------------------------- a real run
RUN_FLAGS = [
    "--voxel-size", "8", "--n-components", "6", "--ica-restarts", "2",
    "--n-permutations", "50", "--min-per-group", "5", "--min-template-r", "-1",
    "--contrasts", "patients>controls", "--stop-after", "stats", "--n-jobs", "2", "-q",
]  # fmt: skip


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report-run")
    cohort = simulate_cohort(
        root / "data",
        n_patients=6,
        n_controls=6,
        n_volumes=60,
        voxel_size=VOXEL_MM,
        seed=1,
        n_jobs=2,
        progress=False,
    )
    out = root / "out"
    assert main(["run", str(cohort.bids_root), str(out), *RUN_FLAGS]) == 0
    return out


@pytest.mark.slow
def test_report_of_a_real_run(real_run):
    html = write_report(real_run).read_text(encoding="utf-8")
    sections, status = section_html(html), statuses(html)
    for anchor in ("methods", "sample", "group-ica", "dual-regression", "statistics"):
        assert status[anchor] == "ok", anchor
        assert "note note-error" not in sections[anchor], anchor
    assert status["classification"] == status["explanations"] == "not-run"
    assert "--stop-after stats" in sections["classification"]
    summary = json.loads((real_run / "summary.json").read_text())
    components = pd.read_csv(real_run / "group" / "desc-ica_components.tsv", sep="\t")
    ica = sections["group-ica"]
    assert ica.count("Glass brain of component") == len(components) == 6
    statistics = sections["statistics"]
    for network, contrasts in summary["stats"]["networks"].items():
        for entry in contrasts.values():
            assert f"{entry['peak_t']:.3g}" in statistics, network
    methods = sections["methods"]
    assert "6 components" in methods and "50 permutations" in methods
    # The MIGP dimension the defaults came to, min(2T - 1, 15 K), as recorded by the run.
    migp_dim = summary["group_ica"]["migp_dim"]
    assert summary["group_ica"]["n_components"] == 6 and migp_dim <= 15 * 6
    assert f"internal dimension {migp_dim})" in methods
    assert "8.0 mm isotropic" in methods
    for _, data in embedded_images(html):
        assert len(data) > 100
