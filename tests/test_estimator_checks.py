"""scikit-learn's estimator checks on rsxai's estimators, where they apply.

The classifiers (``LinearBaseline``, ``ScreenedBaseline``, ``CNNClassifier``) run the
whole suite of ``parametrize_with_checks``; every check expected to fail is listed with the
reason, and ``xfail_strict`` turns a check that starts passing into a failure,
so that the lists stay true. The group steps (``GroupICA``, ``NetworkMaps``,
``FixedMaps``) fit sequences of subjects, not ``X`` arrays, so only the
checks of the parameter API apply to them; those are called directly.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

from rsxai.classify import LinearBaseline, ScreenedBaseline
from rsxai.cnn import CNNClassifier
from rsxai.decomposition import GroupICA
from rsxai.grid import Grid
from rsxai.networks import NetworkMaps
from rsxai.stages import FixedMaps

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cnn(voxels):
    """A CNN on a 2 x 2 x 2 box holding the given voxels: one block, two epochs.

    scikit-learn's checks make ``X`` of their own widths, mostly 2 or 3
    columns; a CNN takes exactly one column per mask voxel, so one instance
    per width lets most checks fit it.
    """
    mask = np.zeros((2, 2, 2), dtype=bool)
    mask[tuple(np.transpose(voxels))] = True
    return CNNClassifier(
        mask,
        n_blocks=1,
        width=2,
        stem_stride=1,
        max_epochs=2,
        start_from_epoch=0,
        patience=1,
        validation_fraction=0,
        shift_voxels=0,
        device="cpu",
        n_threads=1,
    )


CNN_2_VOXELS = _cnn([(0, 0, 0), (1, 1, 1)])
CNN_3_VOXELS = _cnn([(0, 0, 0), (1, 1, 0), (1, 1, 1)])

_OTHER_WIDTH = (
    "the check's X has another number of columns than the mask has voxels; a "
    "CNNClassifier refuses it (InputError naming the expected shape) before the check's "
    "point is reached"
)
# Checks whose X is never 2 or 3 columns wide (or that test a message): no CNN here passes.
_CNN_NEVER = {
    "check_n_features_in_after_fitting": _OTHER_WIDTH,
    "check_positive_only_tag_during_fit": _OTHER_WIDTH,
    "check_estimators_dtypes": _OTHER_WIDTH,
    "check_dtype_object": _OTHER_WIDTH,
    "check_classifiers_regression_target": _OTHER_WIDTH,
    "check_fit2d_1sample": _OTHER_WIDTH,
    "check_fit2d_1feature": (
        "X of 1 column is refused with rsxai's message naming the mask's voxel count, not "
        "scikit-learn's '1 feature(s)'"
    ),
    "check_fit2d_predict1d": (
        "a 1D X is refused with rsxai's message naming the (n_subjects, n_voxels) shape "
        "expected, not scikit-learn's 'Reshape your data'"
    ),
}
# Checks whose X has 3 columns: they fit the 3-voxel CNN only.
_CNN_3_COLUMNS = (
    "check_fit_score_takes_y",
    "check_dont_overwrite_parameters",
    "check_pipeline_consistency",
    "check_estimators_nan_inf",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_classifiers_one_label",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_dict_unchanged",
)
# Checks whose X has 2 columns: they fit the 2-voxel CNN only.
_CNN_2_COLUMNS = (
    "check_estimators_overwrite_params",
    "check_estimators_fit_returns_self",
    "check_readonly_memmap_input",
    "check_classifiers_classes",
    "check_decision_proba_consistency",
    "check_fit_idempotent",
    "check_fit_check_is_fitted",
    "check_n_features_in",
)


def expected_failed_checks(estimator) -> dict[str, str]:
    """The checks that do not apply to ``estimator``, each with the reason."""
    if isinstance(estimator, (LinearBaseline, ScreenedBaseline)):
        return {}  # binary only, which their multi_class=False tag tells the checks
    expected = dict(_CNN_NEVER)
    if int(estimator.mask.sum()) == 2:
        expected.update(dict.fromkeys((*_CNN_3_COLUMNS, "check_supervised_y_2d"), _OTHER_WIDTH))
        expected["check_classifier_data_not_an_array"] = (
            "some of the check's 2-voxel maps have equal voxels: such a map is constant over "
            "the mask and refused (InputError naming the rows)"
        )
        expected["check_classifiers_train"] = (
            "each map is z-scored over its own voxels, so 2 voxels keep only the sign of their "
            "difference: accuracy stays below the check's 0.83"
        )
    else:
        expected.update(
            dict.fromkeys(
                (*_CNN_2_COLUMNS, "check_classifier_data_not_an_array", "check_classifiers_train"),
                _OTHER_WIDTH,
            )
        )
        expected["check_supervised_y_2d"] = (
            "a 2D y of one column is refused (InputError naming its shape), not raveled with "
            "a DataConversionWarning"
        )
    return expected


@parametrize_with_checks(
    # Unsmoothed: smoothing needs a mask of as many voxels as X has columns, and the checks
    # make X of their own widths (the smoothing itself: tests/classify/test_screened.py).
    [
        LinearBaseline(inner_cv=2),
        ScreenedBaseline(smoothing_fwhm=None),
        CNN_2_VOXELS,
        CNN_3_VOXELS,
    ],
    expected_failed_checks=expected_failed_checks,
    xfail_strict=True,
)
def test_classifiers_follow_scikit_learn(estimator, check):
    check(estimator)


def test_every_cnn_check_fits_one_of_the_cnns():
    """A check that one CNN fails for its width runs on the other: the lists do not overlap."""
    two, three = (set(expected_failed_checks(e)) for e in (CNN_2_VOXELS, CNN_3_VOXELS))
    assert two & three == set(_CNN_NEVER) | {
        "check_classifier_data_not_an_array",
        "check_classifiers_train",
        "check_supervised_y_2d",
    }


# The checks of the parameter API; the rest fit or predict on X arrays.
API_CHECKS = (
    "check_estimator_cloneable",
    "check_estimator_tags_renamed",
    "check_valid_tag_types",
    "check_estimator_repr",
    "check_no_attributes_set_in_init",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_mixin_order",
    "check_parameters_default_constructible",
    "check_get_params_invariance",
    "check_set_params",
)


def _group_steps():
    mask = np.zeros((3, 3, 3), dtype=bool)
    mask[1:, 1:, 1:] = True
    return [
        GroupICA(3, n_restarts=2, random_state=np.random.default_rng(0)),
        NetworkMaps(Grid(mask, np.eye(4)), n_components=3, force={"visual": 0}),
        FixedMaps(np.zeros((4, 1, 8), dtype=np.float32), ["visual"]),
    ]


@pytest.mark.parametrize("check_name", API_CHECKS)
@pytest.mark.parametrize("estimator", _group_steps(), ids=lambda e: type(e).__name__)
def test_group_steps_follow_the_parameter_api(estimator, check_name):
    getattr(estimator_checks, check_name)(type(estimator).__name__, estimator)


@pytest.mark.parametrize("estimator", _group_steps(), ids=lambda e: type(e).__name__)
def test_group_steps_raise_not_fitted_before_fit(estimator):
    # scikit-learn's check_estimators_unfitted only calls predict and the like.
    subject = np.zeros((5, 8))
    data = {GroupICA: subject, NetworkMaps: [subject], FixedMaps: [0]}[type(estimator)]
    with pytest.raises(NotFittedError, match=r"instance is not fitted yet; call fit\(subjects\)"):
        clone(estimator).transform(data)
