"""A scikit-learn classifier over one network's subject maps, backed by a 3D CNN.

:class:`CNNClassifier` takes masked maps (subjects x voxels, the shared array
convention) and the brain mask they came from. It turns each map into a
volume cropped to the mask's bounding box and z-scored within the mask
(:func:`rsxai.cnn.inputs.maps_to_volumes`), trains :mod:`rsxai.cnn.architectures`'
network with :func:`rsxai.cnn.training.train_cnn`, and predicts like any
scikit-learn classifier, so that ``cross_validate``, ``clone`` and
permutation tests work on it unchanged. Each map is standardised with its own
statistics only, so no information crosses from one subject to another (nor
from test to training). The map/volume conversion lives in
:mod:`rsxai.cnn.inputs`; ``crop_box`` and ``volumes_to_maps`` stay
importable from here for :mod:`rsxai.explain`. The weights file (safetensors
with metadata) is written and read by :mod:`rsxai.cnn.weights`.
"""

from __future__ import annotations

from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from rsxai.cnn.architectures import MODEL_NAMES, build_model
from rsxai.cnn.inputs import check_mask, crop_box, maps_to_volumes
from rsxai.cnn.inputs import volumes_to_maps as volumes_to_maps  # re-exported: explain imports it
from rsxai.cnn.runtime import reproducible, resolve_device, torch_threads
from rsxai.cnn.training import TrainingHistory, hyperparameter_problems, train_cnn
from rsxai.cnn.weights import read_weights, write_weights
from rsxai.exceptions import InputError

__all__ = ["CNNClassifier"]

# Inference batch: bounds memory at 2 mm (80 x 96 x 80 float32 is 2.5 MB a volume).
_PREDICT_BATCH = 16
_TRAINING_PARAMS = (
    "max_epochs",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "patience",
    "start_from_epoch",
    "shift_voxels",
    "noise_sd",
)
_ARCHITECTURE_PARAMS = ("architecture", "n_blocks", "width", "dropout", "stem_stride", "head")


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and np.isfinite(value)


class CNNClassifier(ClassifierMixin, BaseEstimator):
    """3D CNN classifier of masked subject maps (one resting-state network).

    ``fit`` crops and standardises the maps
    (:func:`rsxai.cnn.inputs.maps_to_volumes`), splits off a stratified
    validation set from the training data it is given (the test subjects of
    a cross-validation never reach it), builds the network with seeded
    weights (:func:`rsxai.cnn.architectures.build_model`) and trains it with early
    stopping on that validation set (:func:`rsxai.cnn.training.train_cnn`).

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
        The brain mask the maps' columns come from.
    architecture : {"cnn3d", "monai_resnet10", "monai_densenet121"}, default="cnn3d"
        See :func:`rsxai.cnn.architectures.build_model`.
    n_blocks : int, default=3
    width : int, default=8
    dropout : float, default=0.3
    stem_stride : {2, 1}, default=2
    head : {"spatial", "global"}, default="spatial"
        Network shape; see :class:`rsxai.cnn.architectures.MapCNN3D`.
    max_epochs : int, default=40
    batch_size : int, default=8
    learning_rate : float, default=1e-3
    weight_decay : float, default=1e-2
    patience : int, default=10
    start_from_epoch : int, default=10
        Early-stopping warm-up: the weights kept come from epoch
        ``start_from_epoch`` (0-based) or later.
    shift_voxels : int, default=2
    noise_sd : float, default=0.1
        Training; see :func:`rsxai.cnn.training.train_cnn`.
    validation_fraction : float, default=0.2
        Share of the training subjects held out (stratified) for early
        stopping, in [0, 1); 0 trains all ``max_epochs`` on every subject.
    random_state : int, default=0
        Seeds the validation split, the weights, the batch order, the
        augmentation and dropout: the same seed gives the same predictions
        (bitwise on the same CPU).
    device : str, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    n_threads : int, optional
        PyTorch CPU threads while fitting and predicting (restored after);
        None leaves PyTorch's setting. Use 1 when other processes share the
        cores (see :func:`rsxai.cnn.runtime.torch_threads`). Results are
        bitwise reproducible for a given seed and thread count.

    Attributes
    ----------
    model_ : torch.nn.Module
        The trained network, in eval mode, on ``device_``.
    history_ : TrainingHistory
        Losses per epoch, best epoch, timings (None after :meth:`from_weights`).
    classes_ : ndarray of shape (n_classes,)
        Class labels; column ``k`` of :meth:`predict_proba` is ``classes_[k]``.
    device_ : torch.device
    in_shape_ : tuple of 3 int
        Shape of the volumes the network sees (the mask's bounding box).
    target_layer_ : str
        Default Grad-CAM layer of ``model_`` for ``in_shape_`` (its
        ``default_target_layer``; see :class:`rsxai.cnn.architectures.MapCNN3D`).
    n_features_in_ : int
        Number of voxels in the mask.
    """

    def __init__(
        self,
        mask: np.ndarray,
        *,
        architecture: str = "cnn3d",
        n_blocks: int = 3,
        width: int = 8,
        dropout: float = 0.3,
        stem_stride: int = 2,
        head: str = "spatial",
        max_epochs: int = 40,
        batch_size: int = 8,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-2,
        patience: int = 10,
        start_from_epoch: int = 10,
        shift_voxels: int = 2,
        noise_sd: float = 0.1,
        validation_fraction: float = 0.2,
        random_state: int = 0,
        device: str = "auto",
        n_threads: int | None = None,
    ):
        self.mask = mask
        self.architecture = architecture
        self.n_blocks = n_blocks
        self.width = width
        self.dropout = dropout
        self.stem_stride = stem_stride
        self.head = head
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.start_from_epoch = start_from_epoch
        self.shift_voxels = shift_voxels
        self.noise_sd = noise_sd
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.device = device
        self.n_threads = n_threads

    def _validate_params(self) -> None:
        problems = hyperparameter_problems(
            **{name: getattr(self, name) for name in _TRAINING_PARAMS}
        )
        if self.architecture not in MODEL_NAMES:
            problems.append(
                f"architecture must be one of {', '.join(map(repr, MODEL_NAMES))}; "
                f"got {self.architecture!r}."
            )
        if not (_is_number(self.validation_fraction) and 0 <= self.validation_fraction < 1):
            problems.append(
                "validation_fraction must be a number in [0, 1); "
                f"got {self.validation_fraction!r}."
            )
        if self.n_threads is not None and not (_is_int(self.n_threads) and self.n_threads >= 1):
            problems.append(f"n_threads must be None or an integer >= 1; got {self.n_threads!r}.")
        if not (_is_int(self.random_state) and 0 <= self.random_state < 2**63):
            problems.append(
                f"random_state must be a non-negative integer; got {self.random_state!r}."
            )
        if problems:
            raise InputError(problems)

    def _build(self, in_shape: tuple[int, int, int], n_classes: int) -> torch.nn.Module:
        return build_model(
            self.architecture,
            in_shape=in_shape,
            n_blocks=self.n_blocks,
            width=self.width,
            dropout=self.dropout,
            n_classes=n_classes,
            stem_stride=self.stem_stride,
            head=self.head,
        )

    def fit(self, X: np.ndarray, y: np.ndarray) -> CNNClassifier:
        """Train the network on masked maps.

        Parameters
        ----------
        X : ndarray of shape (n_subjects, n_voxels)
            One map per subject over ``mask``.
        y : array-like of shape (n_subjects,)
            Class labels (at least two classes).

        Returns
        -------
        self
        """
        self._validate_params()
        mask = check_mask(self.mask)
        if y is None:
            raise InputError(
                "CNNClassifier requires y to be passed, but the target y is None; give one "
                "class label per row of X."
            )
        # scikit-learn's errors for sparse, complex or empty X; maps_to_volumes then
        # checks the shape and names the rows that are not finite or constant.
        X = check_array(
            X, dtype=np.float64, ensure_2d=False, allow_nd=True, ensure_all_finite=False
        )
        volumes = maps_to_volumes(X, mask)
        y = np.asarray(y)
        if y.shape != (volumes.shape[0],):
            raise InputError(
                f"y must have one label per row of X ({volumes.shape[0]}); got shape {y.shape}."
            )
        check_classification_targets(y)  # a continuous y is refused, not binned into classes
        classes, y_index = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise InputError(f"y must hold at least two classes; got 1 class: {classes.tolist()}.")
        device = resolve_device(self.device)
        train, val = np.arange(len(y)), np.array([], dtype=int)
        if self.validation_fraction > 0:
            n_val = int(np.ceil(self.validation_fraction * len(y)))
            counts = np.bincount(y_index)
            if n_val < classes.size or len(y) - n_val < classes.size or counts.min() < 2:
                raise InputError(
                    f"validation_fraction={self.validation_fraction} of {len(y)} subjects "
                    f"(class counts {counts.tolist()}) cannot give a stratified validation set "
                    "holding every class with every class also left for training; give more "
                    "subjects, a larger validation_fraction, or validation_fraction=0 (no "
                    "early stopping)."
                )
            splitter = StratifiedShuffleSplit(
                n_splits=1, test_size=n_val, random_state=self.random_state % 2**32
            )
            train, val = next(splitter.split(np.zeros(len(y)), y_index))
        in_shape = tuple(volumes.shape[2:])
        with reproducible(self.random_state, device):
            model = self._build(in_shape, classes.size)
        with torch_threads(self.n_threads):
            self.history_: TrainingHistory = train_cnn(
                model,
                volumes[train],
                y_index[train],
                volumes[val] if val.size else None,
                y_index[val] if val.size else None,
                max_epochs=self.max_epochs,
                batch_size=self.batch_size,
                learning_rate=self.learning_rate,
                weight_decay=self.weight_decay,
                patience=self.patience,
                start_from_epoch=self.start_from_epoch,
                shift_voxels=self.shift_voxels,
                noise_sd=self.noise_sd,
                input_mask=mask[crop_box(mask)],
                seed=self.random_state,
                device=device,
            )
        self._set_fitted(model, classes, device, mask)
        return self

    def _set_fitted(self, model, classes, device, mask) -> None:
        self.model_ = model.to(device).eval()
        self.classes_ = classes
        self.device_ = device
        self.in_shape_ = tuple(int(n) for n in mask[crop_box(mask)].shape)
        self.target_layer_ = model.default_target_layer(self.in_shape_)
        self.n_features_in_ = int(mask.sum())

    def _check_fitted(self) -> None:
        check_is_fitted(
            self, "model_", msg="This %(name)s instance is not fitted yet; call fit(X, y) first."
        )

    def to_volumes(self, X: np.ndarray) -> np.ndarray:
        """The exact input the network sees for masked maps ``X``.

        Parameters
        ----------
        X : ndarray of shape (n_subjects, n_voxels)

        Returns
        -------
        volumes : ndarray of shape (n_subjects, 1, x, y, z), float32
        """
        self._check_fitted()
        return maps_to_volumes(X, check_mask(self.mask))

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logit differences: shape (n,), the log-odds of ``classes_[1]``, for two classes;
        the logits, shape (n, n_classes), for more."""
        logits = self._logits(X)
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n_subjects, n_classes), columns in ``classes_`` order."""
        logits = self._logits(X)
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted class labels, shape (n_subjects,)."""
        logits = self._logits(X)
        return self.classes_[logits.argmax(axis=1)]

    def _logits(self, X: np.ndarray) -> np.ndarray:
        volumes = torch.from_numpy(self.to_volumes(X))
        self.model_.eval()
        with torch.no_grad(), torch_threads(self.n_threads):
            logits = [
                self.model_(volumes[i : i + _PREDICT_BATCH].to(self.device_)).cpu()
                for i in range(0, len(volumes), _PREDICT_BATCH)
            ]
        return torch.cat(logits).double().numpy()

    def save_weights(self, path: str | Path) -> Path:
        """Write the trained weights as safetensors (atomically), with what rebuilding needs.

        The metadata holds the architecture parameters, the classes, the
        input shape, a digest of the mask and the rsxai version; read it back
        with :meth:`from_weights`. Safetensors cannot run code when loaded,
        unlike pickles. The format is that of :mod:`rsxai.cnn.weights`.
        """
        self._check_fitted()
        return write_weights(
            path,
            self.model_.state_dict(),
            parameters={k: getattr(self, k) for k in _ARCHITECTURE_PARAMS},
            classes=self.classes_,
            in_shape=self.in_shape_,
            mask=check_mask(self.mask),
        )

    @classmethod
    def from_weights(
        cls, path: str | Path, mask: np.ndarray, *, device: str = "auto"
    ) -> CNNClassifier:
        """A fitted classifier rebuilt from :meth:`save_weights`' file, ready to predict.

        Parameters
        ----------
        path : str or Path
            A ``.safetensors`` file written by :meth:`save_weights`.
        mask : ndarray of bool, shape (X, Y, Z)
            The mask the model was trained with (checked against the file).
        device : str, default="auto"

        Returns
        -------
        CNNClassifier
            With ``model_``, ``classes_``, ``device_``, ``in_shape_``,
            ``target_layer_``; ``history_`` is None. Training parameters not
            stored in the file keep their defaults.
        """
        weights = read_weights(path, mask)
        mask = check_mask(mask)
        device_ = resolve_device(device)
        estimator = cls(mask, device=device, **weights.parameters)
        # Seeded in a fork of the global generator: the weights drawn are overwritten anyway.
        with reproducible(0, device_):
            model = estimator._build(weights.in_shape, weights.classes.size)
        model.load_state_dict(weights.state_dict)
        estimator.history_ = None
        estimator._set_fitted(model, weights.classes, device_, mask)
        return estimator
