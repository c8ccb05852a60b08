"""Training a 3D CNN on subject maps: augmentation, class-weighted loss, early stopping.

One call of :func:`train_cnn` trains one model on one training set (one
cross-validation fold): AdamW, cross-entropy weighted so that each class
counts equally, mild augmentation of the training batches only, and early
stopping on a validation set that the caller takes from the training fold
(never from the test subjects), after a warm-up of ``start_from_epoch``
epochs. Everything random draws from generators seeded by ``seed``, and
PyTorch's deterministic algorithms are switched on for the duration
(:func:`rsxai.cnn.runtime.reproducible`), so that the same seed gives
bitwise the same model on the same CPU. Device, seed, determinism
and thread handling live in :mod:`rsxai.cnn.runtime`; ``torch_threads``
stays importable from here for :mod:`rsxai.explain`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from rsxai.cnn.runtime import reproducible, resolve_device
from rsxai.cnn.runtime import torch_threads as torch_threads  # re-exported: explain imports it
from rsxai.exceptions import InputError

__all__ = [
    "TrainingHistory",
    "augment_volumes",
    "hyperparameter_problems",
    "train_cnn",
]


@dataclass
class TrainingHistory:
    """What happened while one model was trained.

    Lists have one entry per epoch run; validation entries are NaN when no
    validation set was given. ``best_epoch`` indexes them (0-based): the
    model returned has the weights of the end of that epoch.
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    n_train: int = 0
    n_val: int = 0
    #: Wall-clock seconds of the optimisation steps only, and of the whole call.
    train_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def n_epochs(self) -> int:
        """Number of epochs run."""
        return len(self.train_loss)

    @property
    def volumes_per_second(self) -> float:
        """Training throughput: volumes through forward + backward + update per second."""
        return self.n_train * self.n_epochs / self.train_seconds if self.train_seconds else 0.0

    def to_frame(self) -> pd.DataFrame:
        """One row per epoch: epoch (1-based), train_loss, val_loss, val_accuracy, best."""
        return pd.DataFrame(
            {
                "epoch": np.arange(1, self.n_epochs + 1),
                "train_loss": self.train_loss,
                "val_loss": self.val_loss,
                "val_accuracy": self.val_accuracy,
                "best": np.arange(self.n_epochs) == self.best_epoch,
            }
        )


def augment_volumes(
    volumes: torch.Tensor,
    *,
    shift_voxels: int,
    noise_sd: float,
    generator: torch.Generator,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Randomly shifted, noisy copies of a batch of volumes (no flips).

    Each volume gets Gaussian noise of standard deviation ``noise_sd``
    (inside ``mask`` only, so the background stays zero as in real input),
    then is shifted by a random whole number of voxels, from
    ``-shift_voxels`` to ``shift_voxels`` on each axis. Shifts fill with zeros
    (zero padding, then cropping): ``torch.roll`` would wrap brain from one
    edge of the tight bounding box onto the opposite one. Left-right flips
    are never made: group differences can be lateralised.

    Parameters
    ----------
    volumes : Tensor of shape (n, 1, x, y, z)
    shift_voxels : int
        Largest shift per axis (0: none).
    noise_sd : float
        Noise standard deviation in the units of the volumes (0: none).
    generator : torch.Generator
        CPU generator all draws come from (the same draws on every device).
    mask : Tensor of shape (x, y, z), optional
        Where noise is added; everywhere when None.

    Returns
    -------
    Tensor of shape (n, 1, x, y, z)
    """
    if noise_sd > 0:
        noise = torch.randn(volumes.shape, generator=generator).to(volumes.device)
        if mask is not None:
            noise = noise * mask
        volumes = volumes + noise_sd * noise
    if shift_voxels > 0:
        s = int(shift_voxels)
        shifts = torch.randint(-s, s + 1, (volumes.shape[0], 3), generator=generator).tolist()
        padded = F.pad(volumes, (s, s, s, s, s, s))
        nx, ny, nz = volumes.shape[2:]
        volumes = torch.stack(
            [
                # out[i] = in[i - shift] on each axis
                padded[i, :, s - dx : s - dx + nx, s - dy : s - dy + ny, s - dz : s - dz + nz]
                for i, (dx, dy, dz) in enumerate(shifts)
            ]
        )
    return volumes


def _check_training_inputs(X, y, name: str) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    if X.ndim != 5 or X.shape[1] != 1:
        raise InputError(f"X_{name} must have shape (n, 1, x, y, z); got {X.shape}.")
    if y.shape != (X.shape[0],) or not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
        raise InputError(
            f"y_{name} must hold {X.shape[0]} class indices (integers 0, 1, ...) matching "
            f"X_{name}; got shape {y.shape}, dtype {y.dtype}."
        )
    if not np.isfinite(X).all():
        raise InputError(f"X_{name} holds NaN or infinite values.")
    return X, y.astype(np.int64)


def hyperparameter_problems(**values) -> list[str]:
    """One message per invalid training hyperparameter of :func:`train_cnn` given by name."""
    problems = []
    for name in ("max_epochs", "batch_size", "patience"):
        value = values.get(name, 1)
        if not (isinstance(value, Integral) and not isinstance(value, bool) and value >= 1):
            problems.append(f"{name} must be an integer >= 1; got {value!r}.")
    for name in ("start_from_epoch", "shift_voxels"):
        value = values.get(name, 0)
        if not (isinstance(value, Integral) and not isinstance(value, bool) and value >= 0):
            problems.append(f"{name} must be an integer >= 0; got {value!r}.")
    for name, positive in (("learning_rate", True), ("weight_decay", False), ("noise_sd", False)):
        value = values.get(name, 1.0)
        ok = isinstance(value, Real) and not isinstance(value, bool) and np.isfinite(value)
        if not ok or value < 0 or (positive and value == 0):
            bound = "> 0" if positive else ">= 0"
            problems.append(f"{name} must be a finite number {bound}; got {value!r}.")
    return problems


def _weighted_loss(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, batch_size: int
) -> tuple[float, float]:
    """Class-weighted cross-entropy and accuracy on a whole set, in eval mode."""
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(X[i : i + batch_size]) for i in range(0, len(X), batch_size)])
    loss = F.cross_entropy(logits, y, weight=weights).item()
    accuracy = (logits.argmax(1) == y).float().mean().item()
    return loss, accuracy


def train_cnn(
    model: nn.Module,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    *,
    max_epochs: int = 40,
    batch_size: int = 8,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-2,
    patience: int = 10,
    start_from_epoch: int = 10,
    shift_voxels: int = 2,
    noise_sd: float = 0.1,
    input_mask: np.ndarray | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
) -> TrainingHistory:
    """Train ``model`` in place; it ends with the weights of its best validation epoch.

    Optimiser: AdamW (decoupled weight decay on convolution and linear
    weights, not on biases and batch-norm parameters). Loss: cross-entropy
    with class weights ``n / (n_classes * n_c)`` from ``y_train`` alone, so
    each class counts equally whatever the group sizes. Each epoch visits the
    training volumes once in a random order, augmented by
    :func:`augment_volumes`; validation volumes are never augmented. With a
    validation set, the weights of the epoch with the lowest validation loss
    (weighted the same way) from epoch ``start_from_epoch`` (0-based) on are
    restored, and training stops once that loss has not improved for
    ``patience`` epochs; without one, all ``max_epochs`` epochs are run and
    the last weights kept.

    Parameters
    ----------
    model : torch.nn.Module
        Maps (batch, 1, x, y, z) to (batch, n_classes) logits; moved to ``device``.
    X_train : ndarray of shape (n_train, 1, x, y, z)
        Training volumes (float32).
    y_train : ndarray of shape (n_train,)
        Class indices 0 .. n_classes - 1; every class must occur.
    X_val : ndarray of shape (n_val, 1, x, y, z), optional
        Validation volumes, from the training data of the fold only.
    y_val : ndarray of shape (n_val,), optional
    max_epochs : int, default=40
    batch_size : int, default=8
    learning_rate : float, default=1e-3
    weight_decay : float, default=1e-2
    patience : int, default=10
        Epochs without a lower validation loss before stopping.
    start_from_epoch : int, default=10
        Warm-up: epochs 0 .. ``start_from_epoch - 1`` are never restored and
        do not count towards ``patience`` (like Keras'
        ``EarlyStopping(start_from_epoch=...)``), so ``best_epoch >=
        start_from_epoch`` and at least ``start_from_epoch + patience + 1``
        epochs are run (all of them, and the last one kept, when
        ``max_epochs <= start_from_epoch``). The validation loss of a small
        validation set (about 10 subjects) is noisy while it still sits near
        chance in the first epochs: without a warm-up, 12 of 75 fits on
        simulated 60-subject cohorts restored weights of epochs 0 to 4 and
        classified at chance.
    shift_voxels : int, default=2
        Largest random shift per axis for augmentation (0: none).
    noise_sd : float, default=0.1
        Standard deviation of the added Gaussian noise, in the units of the
        volumes (within-mask standard deviations for z-scored maps; 0: none).
    input_mask : ndarray of bool, shape (x, y, z), optional
        Voxels of the volumes that are brain: noise is added there only.
    seed : int, default=0
        Seeds the weight-free randomness of training (order, augmentation,
        dropout). Seed the weight initialisation separately, e.g. by building
        the model inside :func:`rsxai.cnn.runtime.reproducible`.
    device : str or torch.device, default="auto"
        See :func:`rsxai.cnn.runtime.resolve_device`.

    Returns
    -------
    TrainingHistory
    """
    started = time.perf_counter()
    problems = hyperparameter_problems(
        max_epochs=max_epochs,
        batch_size=batch_size,
        patience=patience,
        start_from_epoch=start_from_epoch,
        shift_voxels=shift_voxels,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        noise_sd=noise_sd,
    )
    if problems:
        raise InputError(problems)
    device = resolve_device(device)
    X_train, y_train = _check_training_inputs(X_train, y_train, "train")
    n_classes = int(y_train.max()) + 1
    counts = np.bincount(y_train, minlength=n_classes)
    if (counts == 0).any():
        raise InputError(
            f"y_train must contain every class 0..{n_classes - 1}; counts are {counts.tolist()}."
        )
    has_validation = X_val is not None and y_val is not None and len(X_val) > 0
    if has_validation:
        X_val, y_val = _check_training_inputs(X_val, y_val, "val")
        if X_val.shape[1:] != X_train.shape[1:] or y_val.max() >= n_classes:
            raise InputError(
                f"X_val/y_val must match the training data: volumes {X_train.shape[1:]} and "
                f"classes 0..{n_classes - 1}; got {X_val.shape[1:]} and max class {y_val.max()}."
            )
    if input_mask is not None and np.shape(input_mask) != X_train.shape[2:]:
        raise InputError(
            f"input_mask must have the volumes' shape {X_train.shape[2:]}; "
            f"got {np.shape(input_mask)}."
        )

    # One CPU generator for order and augmentation (the same draws on any
    # device); dropout uses the global generator, seeded inside `reproducible`.
    data_seed, dropout_seed = np.random.SeedSequence([int(seed), 1]).generate_state(2)
    generator = torch.Generator().manual_seed(int(data_seed))
    # oneDNN's 3D convolutions are about twice as fast on CPU in channels-last layout.
    layout = torch.channels_last_3d if device.type == "cpu" else torch.contiguous_format
    history = TrainingHistory(n_train=len(X_train), n_val=len(X_val) if has_validation else 0)
    with reproducible(int(dropout_seed), device):
        model.to(device=device, memory_format=layout)
        x_train = torch.from_numpy(X_train).to(device)
        t_train = torch.from_numpy(y_train).to(device)
        mask = None if input_mask is None else torch.as_tensor(input_mask, dtype=torch.float32)
        mask = None if mask is None else mask.to(device)
        if has_validation:
            x_val = torch.from_numpy(X_val).to(device).contiguous(memory_format=layout)
            t_val = torch.from_numpy(y_val).to(device)
        weights = torch.as_tensor(
            len(y_train) / (n_classes * counts), dtype=torch.float32, device=device
        )
        decayed = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
        not_decayed = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
        optimizer = torch.optim.AdamW(
            [
                {"params": decayed, "weight_decay": float(weight_decay)},
                {"params": not_decayed, "weight_decay": 0.0},
            ],
            lr=float(learning_rate),
        )
        best_loss, best_state = np.inf, None
        first_candidate = min(int(start_from_epoch), max_epochs - 1)
        for epoch in range(max_epochs):
            epoch_start = time.perf_counter()
            model.train()
            order = torch.randperm(len(x_train), generator=generator).to(device)
            total = 0.0
            for start in range(0, len(order), batch_size):
                index = order[start : start + batch_size]
                batch = augment_volumes(
                    x_train[index],
                    shift_voxels=shift_voxels,
                    noise_sd=noise_sd,
                    generator=generator,
                    mask=mask,
                )
                loss = F.cross_entropy(
                    model(batch.contiguous(memory_format=layout)), t_train[index], weight=weights
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(index)
            history.train_seconds += time.perf_counter() - epoch_start
            history.train_loss.append(total / len(x_train))
            if not has_validation:
                history.val_loss.append(float("nan"))
                history.val_accuracy.append(float("nan"))
                continue
            val_loss, val_accuracy = _weighted_loss(model, x_val, t_val, weights, batch_size)
            history.val_loss.append(val_loss)
            history.val_accuracy.append(val_accuracy)
            if epoch < first_candidate:
                continue
            if val_loss < best_loss:
                best_loss, history.best_epoch = val_loss, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif epoch - history.best_epoch >= patience:
                history.stopped_early = True
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        else:
            history.best_epoch = history.n_epochs - 1
    model.to(memory_format=torch.contiguous_format)
    model.eval()
    history.seconds = time.perf_counter() - started
    return history
