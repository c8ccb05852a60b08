"""Where the parallel work runs: joblib on this machine, or the workers of a Dask cluster.

Every parallel loop of rsxai (per-subject preprocessing and dual regression,
permutation batches, cross-validation folds, baseline permutations) is a
:class:`joblib.Parallel`. Inside :func:`execution_backend`
with a scheduler address, joblib's ``dask`` backend is the default, so those
loops send their tasks to the cluster's workers without any change in the
stage code; without an address nothing changes and joblib uses ``n_jobs``
local processes. (FastICA restarts share memory, so they always run in
threads of the process that fits the ICA: the parent, or a fold's worker.)

Results do not depend on where they are computed: every loop draws its random
numbers per item (per subject, restart, fold or fixed-size permutation batch),
never per worker, and returns its results in submission order; arrays passed
to a task are aligned in memory on arrival (:func:`use_aligned_arrays`; those
inside other objects by the task, :func:`with_aligned_arrays`), as NumPy sums
misaligned arrays in another order. Bit-for-bit equality with a
local run also needs the same number of BLAS threads per task: Dask's workers
use one (distributed's default ``OMP_NUM_THREADS=1``).

joblib's dask backend ignores ``n_jobs`` (it uses every worker thread), except
where a loop sizes its chunks with ``joblib.effective_n_jobs(n_jobs)``, which
answers 1 for ``n_jobs=1`` whatever the backend. The block therefore yields
the ``n_jobs`` the stages should use: the caller's locally, -1 (every worker
thread of the cluster) on a cluster. A joblib loop nested in a task that runs
on a worker goes back to the cluster through the worker's own client.

The workers read the inputs and write the preprocessed data into the output
folder themselves: both must be on a file system every worker sees, at the
same paths, and the workers need the same rsxai installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import joblib
import numpy as np

from rsxai._version import __version__
from rsxai._version import __version__ as version
from rsxai.config import SECTIONS, Config
from rsxai.exceptions import InputError

if TYPE_CHECKING:
    from distributed import Client

    from rsxai.config import Config

__all__ = [
    "cluster_client",
    "execution_backend",
    "use_aligned_arrays",
    "with_aligned_arrays",
    "with_n_jobs",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How the option is named in messages (command-line flag and configuration key).
OPTION_NAME = "--dask-scheduler (run.dask_scheduler)"


@contextlib.contextmanager
def cluster_client(
    dask_scheduler: str | None,
    *,
    connect_timeout: float = 5.0,
    worker_timeout: float = 120.0,
) -> Iterator[Client | None]:
    """Connect to a Dask scheduler and check it, for the duration of the block.

    The checks (reachable, a scheduler, at least one worker, the workers'
    rsxai version) are those of :func:`execution_backend`; connecting first,
    apart, lets a caller report a bad address before long work (e.g. the
    cohort's validation and checksums) and keep the one connection for the
    block's :func:`execution_backend`.

    Parameters
    ----------
    dask_scheduler : str or None
        Address of a running Dask scheduler. None or "": yields None.
    connect_timeout, worker_timeout : float
        As in :func:`execution_backend`.

    Yields
    ------
    client : distributed.Client or None
        Closed when the block ends.

    Raises
    ------
    InputError
        As :func:`execution_backend`.
    """
    if not dask_scheduler:
        yield None
        return
    client = _connect(dask_scheduler, connect_timeout, worker_timeout)
    try:
        yield client
    finally:
        client.close()


@contextlib.contextmanager
def execution_backend(
    n_jobs: int = 1,
    dask_scheduler: str | None = None,
    *,
    client: Client | None = None,
    connect_timeout: float = 5.0,
    worker_timeout: float = 120.0,
) -> Iterator[int]:
    """Run the joblib loops of the block locally or on a Dask cluster.

    Parameters
    ----------
    n_jobs : int, default=1
        Local worker processes (joblib convention, -1: all cores).
    dask_scheduler : str or None, default=None
        Address of a running Dask scheduler, e.g. ``tcp://10.0.0.5:8786``.
        None or "": run locally (unless ``client`` is given).
    client : distributed.Client or None, default=None
        A connection already made by :func:`cluster_client` (used, not closed);
        None: connect to ``dask_scheduler`` here, for the block.
    connect_timeout : float, default=5.0
        Seconds to reach the scheduler before giving up.
    worker_timeout : float, default=120.0
        Seconds to wait for a first worker (e.g. while batch jobs start).

    Yields
    ------
    n_jobs : int
        What the block's loops should give joblib: ``n_jobs`` locally, -1 on
        a cluster (every worker thread; see the module notes).

    Raises
    ------
    InputError
        When ``distributed`` is not installed, the scheduler cannot be
        reached or is not a Dask scheduler, or no worker joins in time.
    """
    if client is None and not dask_scheduler:
        yield n_jobs
        return

    with contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(
                cluster_client(
                    dask_scheduler, connect_timeout=connect_timeout, worker_timeout=worker_timeout
                )
            )
        stack.callback(use_aligned_arrays())
        client.register_plugin(_aligned_arrays_plugin(), name="rsxai-aligned-arrays")
        threads = sum(client.nthreads().values())
        logger.info(
            "Parallel work runs on the Dask cluster at %s (%d workers, %d threads).",
            dask_scheduler or client.scheduler.address,
            len(client.nthreads()),
            threads,
        )
        with joblib.parallel_config(
            backend="dask", client=client, wait_for_workers_timeout=worker_timeout
        ):
            yield -1


def with_n_jobs(config: Config, n_jobs: int) -> Config:
    """A copy of ``config`` whose ``run.n_jobs`` is ``n_jobs`` (what the stages read).

    Parameters
    ----------
    config : Config
    n_jobs : int
        Typically the value :func:`execution_backend` yields.

    Returns
    -------
    Config
    """
    values = {name: dict(getattr(config, name)) for name in SECTIONS}
    values["run"]["n_jobs"] = n_jobs
    return Config(values)


def use_aligned_arrays() -> Callable[[], None]:
    """Make Dask hand over NumPy arrays aligned in memory, in this process.

    Dask rebuilds an array it receives as a view into its receive buffer, at
    any byte offset. NumPy computes on a misaligned array through buffered
    loops whose summation order differs from the aligned ones, which moves
    the last bits of sums (e.g. dual regression's Z maps): results would
    depend on where they were computed. The deserializer installed here
    (Dask's public ``dask_deserialize`` registry) copies an array only when
    it is misaligned. It covers arrays passed to a task as such, not arrays
    inside other objects, which Dask unpickles itself (pickle protocol 5, the
    arrays again views into the receive buffers); a task that computes on
    those aligns them with :func:`with_aligned_arrays`.

    Returns
    -------
    undo : callable
        Restores the previous deserializer.
    """
    # Optional: Dask is the [dask] extra.
    from distributed.protocol import dask_deserialize

    previous = dask_deserialize.dispatch(np.ndarray)
    if getattr(previous, "rsxai_aligned", False):
        return lambda: None

    def deserialize_aligned(header, frames):
        array = previous(header, frames)
        if array.flags.aligned:
            return array
        aligned = np.require(array, requirements="A")
        aligned.flags.writeable = array.flags.writeable
        return aligned

    deserialize_aligned.rsxai_aligned = True
    dask_deserialize.register(np.ndarray)(deserialize_aligned)
    return lambda: dask_deserialize.register(np.ndarray)(previous)


def with_aligned_arrays(value: T) -> T:
    """``value`` with its NumPy arrays aligned in memory, copying only what is misaligned.

    For the objects a parallel task receives that hold arrays (a fitted
    model, a settings record): see :func:`use_aligned_arrays` for why a task
    run by Dask may get them misaligned, and why that changes results. It is
    called by the task's function on what it receives, rather than hooked
    into Dask's unpickling, because Dask unpickles such objects with the
    standard pickle machinery, which has no public per-type hook; the
    function knows what it computes on, and the call costs nothing (no copy)
    when the arrays are aligned, as they are in a local run.

    Parameters
    ----------
    value : ndarray or object
        An array, or an object whose attributes (its ``__dict__``; one level,
        not nested further) hold arrays.

    Returns
    -------
    ndarray or object
        ``value`` itself when nothing is misaligned; else an aligned copy of
        the array, or a shallow copy of the object whose misaligned array
        attributes are replaced by aligned copies (also for frozen dataclasses).
    """
    if isinstance(value, np.ndarray):
        return value if value.flags.aligned else np.require(value, requirements="A")
    misaligned = {
        name: attribute
        for name, attribute in getattr(value, "__dict__", {}).items()
        if isinstance(attribute, np.ndarray) and not attribute.flags.aligned
    }
    if not misaligned:
        return value
    aligned = copy.copy(value)
    for name, attribute in misaligned.items():
        # object.__setattr__: frozen dataclasses (e.g. BatchSettings) refuse setattr.
        object.__setattr__(aligned, name, np.require(attribute, requirements="A"))
    return aligned


def _aligned_arrays_plugin():
    """A Dask worker plugin running :func:`use_aligned_arrays` on every worker, late ones too.

    The class is made here so that importing this module does not import
    ``distributed``; the workers find :func:`use_aligned_arrays` by reference.
    """
    # Optional: Dask is the [dask] extra.
    from distributed import WorkerPlugin

    class AlignedArrays(WorkerPlugin):
        def setup(self, worker) -> None:
            use_aligned_arrays()

    return AlignedArrays()


def _connect(address: str, connect_timeout: float, worker_timeout: float):
    """A ``distributed.Client`` of the scheduler at ``address`` with at least one worker."""
    try:
        # Optional: Dask is the [dask] extra.
        from distributed import Client
    except ImportError:
        raise InputError(
            f"{OPTION_NAME} = {address!r} needs the Dask 'distributed' package, which is not "
            'installed. Install it with `pip install "rsxai[dask]"`, or leave the option '
            "out to run on this machine."
        ) from None
    # distributed's own connection times out only while opening the socket;
    # a server that accepts it but never answers (a wrong port, e.g. the
    # dashboard's) would hang the client, so the scheduler is asked who it is
    # first, under one deadline.
    with ThreadPoolExecutor(1) as pool:
        try:
            identity = pool.submit(asyncio.run, _identity(address, connect_timeout)).result()
        except Exception as error:  # any failure here means: not a reachable scheduler
            if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
                reason = f"no answer within {connect_timeout:g} s"
            else:
                reason = str(error) or type(error).__name__
            raise InputError(
                f"{OPTION_NAME}: cannot reach a Dask scheduler at {address!r} "
                f"({reason}). Give the address the scheduler prints at "
                "start (e.g. tcp://10.0.0.5:8786, not the dashboard's http address) and check "
                "that it is running and reachable from this machine."
            ) from None
    if not isinstance(identity, dict) or identity.get("type") != "Scheduler":
        raise InputError(
            f"{OPTION_NAME}: {address!r} answers but is not a Dask scheduler "
            f"({identity!r:.80}). Give the address of `dask scheduler` (port 8786 by default)."
        )
    client = Client(address, timeout=connect_timeout, set_as_default=False)
    try:
        client.wait_for_workers(1, timeout=worker_timeout)
    except (TimeoutError, asyncio.TimeoutError):
        client.close()
        raise InputError(
            f"{OPTION_NAME}: the Dask scheduler at {address!r} has no worker after "
            f"{worker_timeout:g} s. Start workers with `dask worker {address}` (or scale "
            "your dask-jobqueue cluster) and run again."
        ) from None
    # Workers run rsxai's own functions: without rsxai, or with another
    # version, every task would fail or compute something else.
    versions = client.run(_rsxai_version, on_error="return")
    wrong = {
        worker: "cannot import rsxai" if isinstance(found, BaseException) else f"rsxai {found}"
        for worker, found in versions.items()
        if found != __version__
    }
    if wrong:
        client.close()
        raise InputError(
            f"{OPTION_NAME}: the workers of {address!r} must run rsxai {__version__}, as this "
            f"machine does; {len(wrong)} do not (e.g. {next(iter(wrong))}: "
            f"{next(iter(wrong.values()))}). Install rsxai {__version__} in the workers' "
            "environment and restart them."
        )
    return client


def _rsxai_version() -> str:
    """The rsxai version of the process this runs in (called on every worker)."""
    return version


async def _identity(address: str, timeout: float) -> dict:
    """The ``identity`` reply of the server at ``address``, within ``timeout`` seconds."""
    # Optional: Dask is the [dask] extra.
    from distributed.comm import connect

    async def ask() -> dict:
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    return await asyncio.wait_for(ask(), timeout)
