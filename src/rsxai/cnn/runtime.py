"""PyTorch's runtime state for reproducible CNN work: device, seeds, determinism, threads.

Training, prediction and attribution all need the same few guarantees from
PyTorch: a checked device (:func:`resolve_device`), seeded global generators
and deterministic algorithms inside a block only (:func:`reproducible`), and a
bounded number of CPU threads (:func:`torch_threads`). Each context manager
restores the caller's settings on exit. They are apart from
:mod:`rsxai.cnn.training` because they hold no training logic: the classifier
and the explanation modules use them directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from rsxai.exceptions import InputError

__all__ = [
    "deterministic_algorithms",
    "reproducible",
    "resolve_device",
    "seed_everything",
    "torch_threads",
]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device to compute on.

    Parameters
    ----------
    device : str or torch.device, default="auto"
        ``"auto"`` (CUDA when PyTorch finds a GPU, else the CPU), ``"cpu"``,
        ``"cuda"`` or ``"cuda:N"``.

    Returns
    -------
    torch.device
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or not (
        device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())
    ):
        raise InputError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}.")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "no GPU visible"
            raise InputError(
                f"device={device!r} but PyTorch {torch.__version__} finds no CUDA GPU "
                f"({build}). Use device='cpu' or 'auto', or install a CUDA build of PyTorch."
            )
        index = int(device[5:]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise InputError(
                f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) exist."
            )
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed PyTorch's global generators (CPU and every CUDA device).

    Weight initialisation and dropout draw from them. This changes global
    state; :func:`reproducible` does it inside a block and restores the
    generators afterwards.
    """
    torch.manual_seed(int(seed))


@contextlib.contextmanager
def deterministic_algorithms(device: torch.device) -> Iterator[None]:
    """Use only deterministic PyTorch algorithms inside the block, then restore the settings.

    On the CPU an operation without a deterministic implementation raises.
    On CUDA it only warns (some pooling backward passes have none) and
    cuDNN is made deterministic: GPU results can still differ in the last
    bits between runs.
    """
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic = previous[2]
        torch.backends.cudnn.benchmark = previous[3]


@contextlib.contextmanager
def torch_threads(n_threads: int | None) -> Iterator[None]:
    """Run PyTorch's CPU operations on ``n_threads`` threads inside the block, then restore.

    None leaves the setting alone. On a machine whose cores are shared with
    other busy processes, PyTorch's OpenMP threads wait on each other at every
    operation (GNU OpenMP spins before sleeping): training on 2 threads was
    measured 10 to 30 times slower than on 1 under such load
    (``benchmarks/cnn_training.py``), so one thread per process, with
    processes in parallel, is the safe choice there.
    """
    if n_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def reproducible(seed: int, device: torch.device) -> Iterator[None]:
    """Seeded global generators and deterministic algorithms inside the block only.

    The caller's random state and settings are restored on exit, so that
    training a model never changes what the rest of a program draws.
    """
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices), deterministic_algorithms(device):
        seed_everything(seed)
        yield
