"""Tests for rsxai.cnn.weights: CNNClassifier.save_weights and from_weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rsxai.cnn import CNNClassifier, build_model, crop_box
from rsxai.cnn.runtime import reproducible
from rsxai.cnn.weights import mask_digest
from rsxai.exceptions import InputError
from rsxai.grid import Grid
from tests.fixtures.explain import LEFT_MM, ellipsoid_mask, mni_like_affine, planted_cohort

MASK = ellipsoid_mask()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_weights_round_trip_through_safetensors(tmp_path):
    X, y, _ = planted_cohort(Grid(MASK, mni_like_affine()), 24, 4.0, LEFT_MM, seed=4)
    clf = CNNClassifier(MASK, n_blocks=2, width=4, max_epochs=2, device="cpu").fit(X, y + 1)
    path = clf.save_weights(tmp_path / "weights" / "fold-0.safetensors")
    assert sorted(p.name for p in path.parent.iterdir()) == ["fold-0.safetensors"]
    with open(path, "rb") as handle:
        assert b"pickle" not in handle.read(200)  # a safetensors JSON header, not a pickle
    loaded = CNNClassifier.from_weights(path, MASK, device="cpu")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.classes_, [1, 2])
    assert (loaded.width, loaded.n_blocks, loaded.head) == (4, 2, "spatial")
    assert loaded.target_layer_ == clf.target_layer_ and loaded.history_ is None
    other_mask = MASK.copy()
    other_mask[np.argwhere(MASK)[0][0], :, :] = False
    with pytest.raises(InputError, match="trained on another mask"):
        CNNClassifier.from_weights(path, other_mask)


def test_weights_of_the_older_layout_still_load(tmp_path):
    # Older files held the metadata keys at the top level of safetensors' map,
    # not under one "rsxai" key: written here by hand, without save_weights.
    from safetensors.torch import save_file

    parameters = {
        "architecture": "cnn3d",
        "n_blocks": 2,
        "width": 4,
        "dropout": 0.3,
        "stem_stride": 2,
        "head": "spatial",
    }
    in_shape = MASK[crop_box(MASK)].shape
    with reproducible(3, torch.device("cpu")):
        model = build_model(in_shape=in_shape, n_blocks=2, width=4, n_classes=2)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "rsxai_version": "0.0.1",
        "parameters": json.dumps(parameters),
        "classes": json.dumps(["HC", "ALS"]),
        "in_shape": json.dumps(list(in_shape)),
        "mask_sha256": mask_digest(MASK),
    }
    old = tmp_path / "old.safetensors"
    save_file(state, str(old), metadata=metadata)
    loaded = CNNClassifier.from_weights(old, MASK, device="cpu")
    np.testing.assert_array_equal(loaded.classes_, ["HC", "ALS"])
    assert loaded.in_shape_ == tuple(in_shape) and (loaded.width, loaded.n_blocks) == (4, 2)
    for name, tensor in loaded.model_.state_dict().items():
        torch.testing.assert_close(tensor, state[name], rtol=0, atol=0)
    foreign = tmp_path / "foreign.safetensors"
    save_file(state, str(foreign))
    with pytest.raises(InputError, match="not written by CNNClassifier"):
        CNNClassifier.from_weights(foreign, MASK)
