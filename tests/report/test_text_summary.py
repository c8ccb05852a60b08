"""The demo's plain-text summary reads summary.json and states every main result."""

from __future__ import annotations

import json

from rsxai.report import text_summary


def test_summary_lines_follow_the_summary_file(tmp_path):
    assert text_summary(tmp_path) == ""
    summary = {
        "networks": {"visual": {"component": 3, "r": 0.52}},
        "stats": {
            "networks": {
                "visual": {
                    "controls>patients": {
                        "n_fwe_significant_voxels": 12,
                        "n_clusters": 1,
                        "min_p_fwe": 0.0004,
                    }
                }
            }
        },
        "classification": {
            "cv": {"scheme": "kfold", "n_splits": 10, "cv_scope": "cohort", "transductive": True},
            "networks": {
                "visual": {
                    "svm": {
                        "accuracy": {"value": 0.783, "ci_low": 0.66, "ci_high": 0.88},
                        "binomial_p_value": 0.00001,
                        "permutation_p_value": 0.021,
                    }
                }
            },
        },
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    text = text_summary(tmp_path)
    assert "Network visual: component 3 (template r = 0.52)" in text
    assert "12 FWE-significant voxels, 1 clusters, min FWE p < 0.001" in text
    assert "scope cohort (transductive)" in text
    assert "visual svm: accuracy 78.3% [66.0%, 88.0%], binomial p < 0.001" in text
    assert "permutation p 0.021" in text


def test_explanation_lines_give_agreement_localisation_and_sanity(tmp_path):
    summary = {
        "explanations": {
            "networks": {
                "visual": {
                    "methods": {
                        "saliency": {
                            "sanity": {"cascading": {"verdict": "pass"}, "label": {"verdict": ""}},
                            "targets": {
                                "patient": {
                                    "agreement": {"spearman": 0.41, "dice": None},
                                    "localisation": {"mass_ratio": 2.5},
                                }
                            },
                        }
                    }
                }
            }
        }
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    line = text_summary(tmp_path)
    assert line.startswith("Explanation visual saliency (patient): Spearman r with |t| 0.41")
    assert "Dice n/a" in line and "2.5x its share" in line and line.endswith("sanity pass")


def test_classification_line_says_unknown_scope_and_first_repeat(tmp_path):
    cv = {"scheme": "kfold", "n_splits": 10, "n_repeats": 3, "cv_scope": "external maps"}
    cv |= {"transductive": None, "headline": "first repeat: ..."}
    summary = {"classification": {"cv": cv, "networks": {}}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    text = text_summary(tmp_path)
    assert "scope external maps (possibly transductive)" in text
    assert "metrics and p of the first of 3 repeats" in text
