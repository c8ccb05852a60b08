"""Small planted cohorts, fold models and output folders for the explanation tests.

``from explain_fixture import ...`` (as ``fmriprep_fixture``). Everything is
seeded and tiny (a 16 x 20 x 16 grid at 4 mm) so that CNNs train in seconds.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from rsxai.cnn_classifier import CNNClassifier, crop_box
from rsxai.grid import Grid

SHAPE = (16, 20, 16)
VOXEL_MM = 4.0
#: World positions (mm) in the left and right hemisphere of the grid.
LEFT_MM = (-16.0, 4.0, 0.0)
RIGHT_MM = (16.0, 4.0, 0.0)
#: Fast CNN settings: stride-1 stem (no checkerboard in the gradients), two blocks,
#: 80 epochs without early stopping and strong weight decay, so that weights that
#: carry nothing decay (their gradients would spread relevance everywhere).
CNN_PARAMS = {
    "n_blocks": 2,
    "stem_stride": 1,
    "max_epochs": 80,
    "patience": 80,
    "weight_decay": 0.1,
    "device": "cpu",
}


def ellipsoid_mask(shape=SHAPE, margin=(1, 0, 1)) -> np.ndarray:
    """A brain-like ellipsoid with an empty margin on each side of the grid."""
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1) / 2
    radii = np.array(shape) / 2 - 0.5 - np.array(margin)
    return (((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) <= 1


def mni_like_affine(shape=SHAPE, flip_x: bool = False) -> np.ndarray:
    """4 mm voxels, world origin at the grid's centre; RAS, or LAS with ``flip_x``."""
    affine = np.diag([VOXEL_MM, VOXEL_MM, VOXEL_MM, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2 * VOXEL_MM
    if flip_x:
        affine[0, 0] = -VOXEL_MM
        affine[0, 3] = (shape[0] - 1) / 2 * VOXEL_MM
    return affine


def blob_at(grid: Grid, centre_mm, sigma_mm: float) -> np.ndarray:
    """Gaussian blob of peak 1 at a world position, over the grid's mask, shape (n_voxels,)."""
    distance = np.linalg.norm(grid.world_coordinates() - np.asarray(centre_mm), axis=1)
    return np.exp(-0.5 * (distance / sigma_mm) ** 2)


def planted_cohort(grid: Grid, n_subjects: int, effect: float, centre_mm, seed: int = 0):
    """Smooth noise maps; patients (y = 1, every other subject) carry a blob of ``effect``.

    Returns
    -------
    X : ndarray of shape (n_subjects, n_voxels)
    y : ndarray of int, shape (n_subjects,)
    blob : ndarray of shape (n_voxels,)
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n_subjects) % 2
    noise = ndimage.gaussian_filter(rng.standard_normal((n_subjects, *grid.shape)), (0, 1, 1, 1))
    X = noise[:, grid.mask] / noise[:, grid.mask].std()
    blob = blob_at(grid, centre_mm, 2.5 * VOXEL_MM)
    return X + effect * y[:, None] * blob, y, blob


def fold_models(mask, X, y, fold_of, **params) -> dict[int, CNNClassifier]:
    """One CNN per fold, fitted on the other folds' subjects."""
    settings = CNN_PARAMS | params
    return {
        int(fold): CNNClassifier(mask, **settings).fit(X[fold_of != fold], y[fold_of != fold])
        for fold in np.unique(fold_of)
    }


class LinearProbe(nn.Module):
    """Logits ``(0, sum(weights * conv(x)))`` with a 1x1x1 convolution of weight 1.

    Its saliency is exactly ``|weights|``: a model whose explanation is known.
    """

    def __init__(self, weights: np.ndarray):
        super().__init__()
        self.conv = nn.Conv3d(1, 1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (self.conv(x)[:, 0] * self.weights).sum(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(score), score], dim=1)

    def default_target_layer(self, in_shape) -> str:
        return "conv"


def probe_classifier(mask: np.ndarray, weights: np.ndarray) -> CNNClassifier:
    """A fitted-looking CNNClassifier around :class:`LinearProbe`.

    ``weights`` (n_voxels,) over ``mask`` are placed in the mask's bounding box.
    """
    box_mask = mask[crop_box(mask)]
    volume = np.zeros(box_mask.shape, dtype=np.float32)
    volume[box_mask] = weights
    classifier = CNNClassifier(mask, device="cpu")
    classifier.model_ = LinearProbe(volume).eval()
    classifier.classes_ = np.array([0, 1])
    classifier.device_ = torch.device("cpu")
    classifier.in_shape_ = box_mask.shape
    classifier.target_layer_ = "conv"
    classifier.n_features_in_ = int(mask.sum())
    return classifier
