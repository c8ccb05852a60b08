"""Tests for rsxai.cnn.classifier, cnn_inputs, cnn_training and torch_runtime.

The weights file (rsxai.cnn.weights) is tested in test_cnn_weights.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression

from rsxai.cnn import (
    CNNClassifier,
    build_model,
    crop_box,
    maps_to_volumes,
    resolve_device,
    train_cnn,
    volumes_to_maps,
)
from rsxai.cnn.runtime import deterministic_algorithms, reproducible
from rsxai.cnn.training import augment_volumes
from rsxai.exceptions import InputError
from rsxai.grid import Grid

SHAPE = (16, 20, 16)
FAST = {"n_blocks": 2, "max_epochs": 30, "device": "cpu"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ellipsoid_mask(shape=SHAPE, margin=(1, 0, 1)):
    """A brain-like ellipsoid with an empty margin on each side of the grid."""
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1) / 2
    radii = np.array(shape) / 2 - 0.5 - np.array(margin)
    return (((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) <= 1


MASK = ellipsoid_mask()


def planted_maps(n_subjects, effect, seed, mask=MASK):
    """Smooth noise maps; class 1 has a Gaussian blob of amplitude ``effect`` added.

    Returns X (n_subjects, n_voxels), y (alternating 0, 1) and the blob over the mask.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n_subjects) % 2
    noise = ndimage.gaussian_filter(rng.standard_normal((n_subjects, *mask.shape)), (0, 1, 1, 1))
    noise /= noise[:, mask].std()
    grid = np.indices(mask.shape).transpose(1, 2, 3, 0)
    centre = np.array(mask.shape) * np.array([0.3, 0.4, 0.6])
    blob = np.exp(-((grid - centre) ** 2).sum(-1) / (2 * 1.5**2))
    volumes = noise + effect * y[:, None, None, None] * blob
    return volumes[:, mask], y, blob[mask]


# ---------------------------------------------------------------- volumes


def test_maps_to_volumes_crops_zscores_within_mask_and_round_trips():
    rng = np.random.default_rng(0)
    X = rng.normal(3.0, 2.0, (5, int(MASK.sum()))) + rng.normal(0, 5, (5, 1))
    volumes = maps_to_volumes(X, MASK)
    box = crop_box(MASK)
    # Independent reference for the box: the extent of the mask's voxels.
    coords = np.argwhere(MASK)
    expected_shape = tuple(coords.max(0) - coords.min(0) + 1)
    assert volumes.shape == (5, 1, *expected_shape) and volumes.dtype == np.float32
    assert tuple(s.start for s in box) == tuple(coords.min(0))
    assert MASK[box].sum() == MASK.sum()
    # Outside the mask: zero. Inside: each subject z-scored over its own voxels.
    assert np.all(volumes[:, 0, ~MASK[box]] == 0)
    zscored = (X - X.mean(1, keepdims=True)) / X.std(1, keepdims=True)
    np.testing.assert_allclose(volumes_to_maps(volumes, MASK), zscored, atol=1e-5)
    np.testing.assert_allclose(volumes_to_maps(volumes[:, 0], MASK), zscored, atol=1e-5)
    # Placing the volumes back in the full grid gives Grid.to_img's volumes.
    full = np.zeros((5, *MASK.shape), dtype=np.float32)
    full[(slice(None), *box)] = volumes[:, 0]
    expected = np.moveaxis(np.asarray(Grid(MASK, np.eye(4)).to_img(zscored).dataobj), -1, 0)
    np.testing.assert_allclose(full, expected, atol=1e-5)


def test_each_subject_is_standardised_with_its_own_statistics_only():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(6, int(MASK.sum())))
    alone = maps_to_volumes(X[2:3], MASK)
    together = maps_to_volumes(X * [[1], [1], [1], [9], [9], [9]] + 7, MASK)
    np.testing.assert_array_equal(alone[0], maps_to_volumes(X, MASK)[2])
    np.testing.assert_allclose(together[:3], maps_to_volumes(X[:3], MASK), atol=1e-6)


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.zeros((3, 10)), f"X must have shape (n_subjects, {int(MASK.sum())})"),
        (np.ones((2, int(MASK.sum()))), "X rows [0, 1] are constant over the mask"),
        (np.full((1, int(MASK.sum())), np.nan), "X rows [0] hold NaN"),
    ],
)
def test_maps_to_volumes_rejects_bad_maps(X, message):
    with pytest.raises(InputError) as raised:
        maps_to_volumes(X, MASK)
    assert message in str(raised.value)


def test_volumes_to_maps_and_masks_reject_wrong_shapes():
    with pytest.raises(InputError, match="the mask's bounding box"):
        volumes_to_maps(np.zeros((2, 1, 3, 3, 3)), MASK)
    with pytest.raises(InputError, match="mask must be a 3D boolean array"):
        crop_box(np.ones((4, 4)))
    with pytest.raises(InputError, match="mask is empty"):
        crop_box(np.zeros((4, 4, 4), dtype=bool))


# ---------------------------------------------------------------- training pieces


def test_augmentation_shifts_with_zero_fill_adds_noise_in_mask_and_never_flips():
    generator = torch.Generator().manual_seed(0)
    # Two interior voxels of different values: both move by the same shift
    # (a flip would change their offset).
    volume = torch.zeros((1, 1, 8, 9, 10))
    volume[0, 0, 2, 3, 4] = 1.0
    volume[0, 0, 5, 6, 3] = 2.0
    seen = set()
    for _ in range(60):
        out = augment_volumes(volume, shift_voxels=2, noise_sd=0.0, generator=generator)
        assert out.shape == volume.shape and torch.count_nonzero(out) == 2
        shift = np.subtract(torch.nonzero(out[0, 0] == 1.0)[0].tolist(), [2, 3, 4])
        moved = np.subtract(torch.nonzero(out[0, 0] == 2.0)[0].tolist(), [5, 6, 3])
        np.testing.assert_array_equal(moved, shift)
        assert np.abs(shift).max() <= 2
        seen.add(tuple(shift))
    assert len(seen) > 20  # of the 125 possible shifts
    # A voxel on the low-x edge either moves up or falls off; it never wraps
    # around to the high-x edge as torch.roll would.
    edge = torch.zeros((1, 1, 8, 9, 10))
    edge[0, 0, 0, 4, 4] = 1.0
    fell_off = 0
    for _ in range(60):
        out = augment_volumes(edge, shift_voxels=2, noise_sd=0.0, generator=generator)
        points = torch.nonzero(out[0, 0]).tolist()
        fell_off += not points
        assert all(point[0] <= 2 for point in points)
    assert 0 < fell_off < 60
    unchanged = augment_volumes(volume, shift_voxels=0, noise_sd=0.0, generator=generator)
    assert torch.equal(unchanged, volume)
    mask = torch.zeros((8, 9, 10))
    mask[2:6] = 1
    noisy = augment_volumes(
        volume * 0, shift_voxels=0, noise_sd=0.5, generator=generator, mask=mask
    )
    assert torch.all(noisy[0, 0, mask == 0] == 0)
    assert 0.45 < noisy[0, 0, mask == 1].std() < 0.55
    again = augment_volumes(
        volume, shift_voxels=2, noise_sd=0.5, generator=torch.Generator().manual_seed(3)
    )
    same = augment_volumes(
        volume, shift_voxels=2, noise_sd=0.5, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(again, same)


def _planted_volumes_and_model(effect):
    """40 planted maps as CNN volumes, their labels, and a fresh 2-block model (seeded)."""
    X, y, _ = planted_maps(40, effect, seed=2)
    volumes = maps_to_volumes(X, MASK)
    with reproducible(0, torch.device("cpu")):
        model = build_model(in_shape=volumes.shape[2:], n_blocks=2)
    return volumes, y, model


@pytest.mark.parametrize("effect", [0.0, 4.0])
def test_train_cnn_keeps_the_best_validation_weights_and_respects_patience(effect):
    volumes, y, model = _planted_volumes_and_model(effect)
    history = train_cnn(
        model,
        volumes[:30],
        y[:30],
        volumes[30:],
        y[30:],
        max_epochs=25,
        patience=4,
        start_from_epoch=0,
        device="cpu",
    )
    n = history.n_epochs
    assert n == len(history.train_loss) == len(history.val_loss) == len(history.val_accuracy)
    best = history.best_epoch
    assert history.val_loss[best] == min(history.val_loss)
    assert history.stopped_early == (n < 25)
    if history.stopped_early:
        assert n - 1 - best == 4
        assert min(history.val_loss[best + 1 :]) >= history.val_loss[best]
    # Without signal the validation loss soon stops improving; with it, it falls.
    if effect == 0:
        assert history.stopped_early and best < 10
    else:
        assert history.val_loss[best] < 0.5
    # The returned model is the best epoch's: its validation loss is recomputed
    # here from scratch (balanced classes, so plain cross-entropy).
    with torch.no_grad():
        logits = model(torch.from_numpy(volumes[30:]))
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[30:])).item()
    assert loss == pytest.approx(history.val_loss[best], rel=1e-4)
    assert not model.training
    frame = history.to_frame()
    assert list(frame.columns) == ["epoch", "train_loss", "val_loss", "val_accuracy", "best"]
    assert frame["best"].sum() == 1 and frame.loc[frame["best"], "epoch"].item() == best + 1
    assert history.volumes_per_second > 0


def _flipped_validation_fit(start_from_epoch, max_epochs=12, patience=3):
    """A fit whose validation loss is lowest at epoch 0: the validation labels are flipped.

    Training learns the planted blob, so the better the model, the worse it
    does on validation subjects whose labels are the other way round.
    """
    volumes, y, model = _planted_volumes_and_model(4.0)
    history = train_cnn(
        model,
        volumes[:30],
        y[:30],
        volumes[30:],
        1 - y[30:],
        max_epochs=max_epochs,
        patience=patience,
        start_from_epoch=start_from_epoch,
        device="cpu",
    )
    with torch.no_grad():
        logits = model(torch.from_numpy(volumes[30:]))
    restored_loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(1 - y[30:]))
    return history, restored_loss.item()


def test_warm_up_never_restores_an_early_epoch_even_when_its_validation_loss_is_lowest():
    # Without a warm-up, epoch 0 is restored and training stops `patience` epochs later.
    history, _ = _flipped_validation_fit(start_from_epoch=0)
    assert history.best_epoch == int(np.argmin(history.val_loss)) == 0
    assert history.stopped_early and history.n_epochs == 0 + 3 + 1
    # With a warm-up of 4 epochs, the best of epochs 4.. is restored although
    # epochs 0..3 had a lower validation loss, and patience counts from epoch 4.
    history, restored_loss = _flipped_validation_fit(start_from_epoch=4)
    best = history.best_epoch
    assert best >= 4
    assert best == 4 + int(np.argmin(history.val_loss[4:]))
    assert min(history.val_loss[:4]) < history.val_loss[best]
    assert history.stopped_early and history.n_epochs == best + 3 + 1 >= 4 + 3 + 1
    assert restored_loss == pytest.approx(history.val_loss[best], rel=1e-4)
    assert history.to_frame().loc[lambda frame: frame["best"], "epoch"].item() == best + 1
    # A warm-up as long as training: every epoch is run and the last one kept.
    history, restored_loss = _flipped_validation_fit(start_from_epoch=20, max_epochs=5)
    assert (history.n_epochs, history.best_epoch, history.stopped_early) == (5, 4, False)
    assert restored_loss == pytest.approx(history.val_loss[4], rel=1e-4)


def test_train_cnn_rejects_bad_inputs():
    volumes = np.zeros((4, 1, 8, 8, 8), dtype=np.float32)
    model = build_model(in_shape=(8, 8, 8), n_blocks=1)
    with pytest.raises(InputError, match=r"y_train must contain every class 0\.\.2"):
        train_cnn(model, volumes, np.array([0, 0, 2, 2]), device="cpu")
    with pytest.raises(InputError, match="X_train must have shape"):
        train_cnn(model, volumes[:, 0], np.array([0, 1, 0, 1]), device="cpu")
    with pytest.raises(InputError) as raised:
        train_cnn(
            model,
            volumes,
            [0, 1, 0, 1],
            max_epochs=0,
            learning_rate=-1,
            start_from_epoch=-1,
            device="cpu",
        )
    assert "max_epochs must be an integer >= 1; got 0" in str(raised.value)
    assert "learning_rate must be a finite number > 0; got -1" in str(raised.value)
    assert "start_from_epoch must be an integer >= 0; got -1" in str(raised.value)


def test_devices_and_scoped_determinism():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="finds no CUDA GPU"):
            resolve_device("cuda")
    before = torch.are_deterministic_algorithms_enabled()
    with deterministic_algorithms(torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() == before
    # `reproducible` seeds inside the block and gives the caller's generator back.
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    with reproducible(7, torch.device("cpu")):
        inside = torch.rand(3)
    np.testing.assert_array_equal(torch.rand(3), expected_next)
    with reproducible(7, torch.device("cpu")):
        np.testing.assert_array_equal(torch.rand(3), inside)


# ---------------------------------------------------------------- the classifier


def test_planted_blob_is_learned_above_chance_on_held_out_subjects():
    X, y, _ = planted_maps(40, 5.0, seed=0)
    X_test, y_test, _ = planted_maps(200, 5.0, seed=1)
    clf = CNNClassifier(MASK, **FAST).fit(X, y)
    accuracy = np.mean(clf.predict(X_test) == y_test)
    # A linear model on the same volumes, for scale (about 0.95 here; the CNN
    # made 0.88 to 0.92 with seeds 0 to 3).
    volumes = maps_to_volumes(X, MASK).reshape(len(X), -1)
    linear = LogisticRegression(max_iter=5000).fit(volumes, y)
    linear_accuracy = linear.score(maps_to_volumes(X_test, MASK).reshape(200, -1), y_test)
    assert accuracy >= 0.8, (accuracy, linear_accuracy)
    assert clf.history_.val_loss[clf.history_.best_epoch] < np.log(2)
    probabilities = clf.predict_proba(X_test)
    np.testing.assert_allclose(probabilities.sum(1), 1.0)
    scores = clf.decision_function(X_test)
    np.testing.assert_allclose(
        scores, np.log(probabilities[:, 1] / probabilities[:, 0]), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_array_equal(clf.predict(X_test), (scores > 0).astype(int))


def test_no_signal_is_not_learned():
    X, y, _ = planted_maps(40, 0.0, seed=0)
    X_test, y_test, _ = planted_maps(200, 0.0, seed=1)
    clf = CNNClassifier(MASK, **FAST).fit(X, y)
    # 200 test subjects: 0.65 is 4 binomial standard deviations above chance.
    assert np.mean(clf.predict(X_test) == y_test) <= 0.65


def test_same_seed_gives_bitwise_identical_predictions_and_keeps_global_rng():
    X, y, _ = planted_maps(24, 4.0, seed=3)
    labels = np.where(y == 1, "patient", "control")
    params = {"n_blocks": 2, "max_epochs": 3, "device": "cpu"}
    torch.manual_seed(11)
    state = torch.get_rng_state()
    first = CNNClassifier(MASK, **params).fit(X, labels)
    assert torch.equal(torch.get_rng_state(), state)  # fit leaves the caller's generator alone
    torch.manual_seed(99)  # a different global state must not matter
    second = CNNClassifier(MASK, **params).fit(X, labels)
    other = CNNClassifier(MASK, random_state=1, **params).fit(X, labels)
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))
    assert first.history_.train_loss == second.history_.train_loss
    assert not np.array_equal(first.predict_proba(X), other.predict_proba(X))
    assert list(first.classes_) == ["control", "patient"]
    assert set(first.predict(X)) <= {"control", "patient"}
    # n_threads applies inside fit and predict only.
    torch.set_num_threads(2)
    try:
        threaded = CNNClassifier(MASK, n_threads=1, **params).fit(X, labels)
        assert torch.get_num_threads() == 2
        np.testing.assert_array_equal(threaded.predict_proba(X), first.predict_proba(X))
    finally:
        torch.set_num_threads(1)


def test_fitted_state_and_network_input():
    X, y, _ = planted_maps(24, 4.0, seed=3)
    clf = CNNClassifier(MASK, n_blocks=2, max_epochs=2, device="cpu")
    with pytest.raises(NotFittedError):
        clf.predict(X)
    clf.fit(X, y)
    assert not clf.model_.training
    assert clf.device_ == torch.device("cpu")
    assert clf.in_shape_ == MASK[crop_box(MASK)].shape
    assert clf.n_features_in_ == MASK.sum()
    assert clf.target_layer_ in dict(clf.model_.named_modules())
    volumes = clf.to_volumes(X)
    np.testing.assert_array_equal(volumes, maps_to_volumes(X, MASK))
    with torch.no_grad():
        logits = clf.model_(torch.from_numpy(volumes)).double().numpy()
    np.testing.assert_allclose(clf.decision_function(X), logits[:, 1] - logits[:, 0], atol=1e-6)
    # 24 subjects, validation_fraction 0.2: 5 held out, stratified.
    assert (clf.history_.n_train, clf.history_.n_val) == (19, 5)
    # The default warm-up (10 epochs) is longer than these 2 epochs: the last is kept.
    assert clf.history_.best_epoch == 1
    # A warm-up of 2 given to the classifier reaches train_cnn: without signal
    # it stops early (with the default warm-up it would run all 8 epochs).
    X_noise, y_noise, _ = planted_maps(24, 0.0, seed=3)
    clf.set_params(max_epochs=8, start_from_epoch=2, patience=1)
    history = clf.fit(X_noise, y_noise).history_
    assert history.best_epoch == 2 + int(np.argmin(history.val_loss[2:]))
    assert history.stopped_early and history.n_epochs == history.best_epoch + 1 + 1
    # Without validation: every epoch is run on every subject and the last one is kept.
    clf = CNNClassifier(MASK, n_blocks=2, max_epochs=3, validation_fraction=0, device="cpu")
    history = clf.fit(X, y).history_
    assert (history.n_train, history.n_val, history.n_epochs, history.best_epoch) == (24, 0, 3, 2)
    assert np.isnan(history.val_loss).all() and not history.stopped_early


def test_clone_and_get_params():
    clf = CNNClassifier(MASK, width=4, max_epochs=5, random_state=3)
    copy = clone(clf)
    params = copy.get_params()
    assert params["width"] == 4 and params["max_epochs"] == 5 and params["random_state"] == 3
    np.testing.assert_array_equal(params["mask"], MASK)
    assert not hasattr(copy, "model_")
    assert copy.set_params(width=6).width == 6
    assert set(CNNClassifier(MASK).get_params()) >= {
        "n_blocks",
        "width",
        "dropout",
        "max_epochs",
        "batch_size",
        "learning_rate",
        "weight_decay",
        "patience",
        "start_from_epoch",
        "validation_fraction",
        "shift_voxels",
        "noise_sd",
        "random_state",
        "device",
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"architecture": "vgg"}, "architecture must be one of 'cnn3d'"),
        ({"validation_fraction": 1.0}, "validation_fraction must be a number in [0, 1); got 1.0"),
        ({"random_state": None}, "random_state must be a non-negative integer; got None"),
        ({"width": 0}, "width must be an integer from 1 to 256; got 0"),
        ({"patience": 0}, "patience must be an integer >= 1; got 0"),
        ({"start_from_epoch": 2.5}, "start_from_epoch must be an integer >= 0; got 2.5"),
        ({"start_from_epoch": True}, "start_from_epoch must be an integer >= 0; got True"),
        ({"device": "gpu"}, "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got 'gpu'"),
        ({"n_threads": 0}, "n_threads must be None or an integer >= 1; got 0"),
    ],
)
def test_bad_parameters_raise_clear_errors(params, message):
    X, y, _ = planted_maps(12, 1.0, seed=5)
    with pytest.raises(InputError) as raised:
        CNNClassifier(MASK, n_blocks=2, max_epochs=1, **params).fit(X, y)
    assert message in str(raised.value)


def test_bad_labels_and_tiny_classes_are_reported():
    X, y, _ = planted_maps(12, 1.0, seed=5)
    with pytest.raises(InputError, match="at least two classes"):
        CNNClassifier(MASK).fit(X, np.zeros(12))
    with pytest.raises(InputError, match="one label per row of X"):
        CNNClassifier(MASK).fit(X, y[:5])
    with pytest.raises(InputError, match="cannot give a stratified validation set"):
        CNNClassifier(MASK).fit(X, np.r_[np.zeros(11), 1])
