"""Execution on a Dask cluster: the same outputs as a local run, clear errors for bad addresses."""

from __future__ import annotations

import hashlib
import pickle
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits

import rsxai
from rsxai.cli import EXIT_INPUT_ERROR, build_parser, main
from rsxai.cli.commands import _overrides
from rsxai.config import resolve_config
from rsxai.exceptions import InputError
from rsxai.parallel import execution_backend, with_n_jobs
from rsxai.simulate import simulate_cohort

distributed = pytest.importorskip(
    "distributed", reason='Dask distributed is not installed (pip install "rsxai[dask]")'
)

# A tiny cohort through every parallel loop: preprocessing, dual regression,
# permutation batches (200 = 4 batches), CV folds (each with its own group ICA)
# and baseline nulls. (ICA restarts run in threads of the process fitting the ICA.)
FLAGS = [
    "--voxel-size",
    "6",
    "--n-components",
    "8",
    "--ica-restarts",
    "1",
    "--n-permutations",
    "200",
    "--contrasts",
    "patients>controls",
    "--min-per-group",
    "5",
    "--networks",
    "visual",
    "--min-template-r",
    "-1",
    "--cv-folds",
    "3",
    "--models",
    "cnn",
    "logistic",
    "--cnn-epochs",
    "2",
    "--cnn-width",
    "4",
    "--baseline-permutations",
    "9",
    "--stop-after",
    "classify",
    "-q",
]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as local_cluster:
        yield local_cluster


@pytest.fixture(scope="module")
def cohort_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("execution") / "data"
    simulate_cohort(
        root, n_patients=5, n_controls=5, n_volumes=60, voxel_size=6.0, seed=4, progress=False
    )
    return root


def _result_files(out: Path) -> dict[str, str]:
    """Digest of every NIfTI and TSV result (the internal state folder left out)."""
    return {
        str(path.relative_to(out)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(out.rglob("*"))
        if path.is_file() and path.suffix in {".gz", ".tsv"} and ".rsxai" not in path.parts
    }


def test_cluster_run_gives_the_outputs_of_a_local_run(cluster, cohort_root, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "cluster"
    # BLAS splits a product differently with another thread count, which moves
    # the last bits; Dask's workers use one BLAS thread (distributed's default
    # OMP/OPENBLAS_NUM_THREADS=1), so the local reference and this process do too.
    with threadpool_limits(1):
        assert main(["run", str(cohort_root), str(local), *FLAGS]) == 0
        with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
            client.get_task_stream()  # starts recording the tasks the workers run
            address = ["--dask-scheduler", cluster.scheduler_address]
            assert main(["run", str(cohort_root), str(remote), *FLAGS, *address]) == 0
            tasks = client.get_task_stream()
    expected = _result_files(local)
    assert any(name.endswith(".nii.gz") for name in expected)
    assert any(name.startswith("classification/") for name in expected)
    assert _result_files(remote) == expected
    # Every kind of parallel work ran on the workers, spread over both.
    ran = " ".join(task["key"] for task in tasks)
    for function in (
        "_preprocess_one",
        "_dual_regress_one",
        "run_batches",
        "_run_fold",
        "_score_chunk",
    ):
        assert function in ran, f"{function} did not run on the cluster"
    assert len({task["worker"] for task in tasks}) == 2
    # The options are recorded as given (n_jobs is not the cluster's -1).
    toml = (remote / "rsxai.toml").read_text()
    assert f'dask_scheduler = "{cluster.scheduler_address}"' in toml
    assert "n_jobs = 1" in toml


def _silent_port() -> tuple[socket.socket, str]:
    """A listening socket that accepts connections and never answers (not a scheduler)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server, f"tcp://127.0.0.1:{server.getsockname()[1]}"


def _closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def test_unreachable_scheduler_is_an_input_error_naming_the_option(cohort_root, tmp_path, capsys):
    address = _closed_port()
    code = main(
        ["run", str(cohort_root), str(tmp_path / "out"), *FLAGS, "--dask-scheduler", address]
    )
    assert code == EXIT_INPUT_ERROR
    message = capsys.readouterr().err
    assert "--dask-scheduler" in message and address in message
    assert not list((tmp_path / "out").glob("sub-*"))  # no stage ran


def test_bad_scheduler_is_found_before_the_cohort_is_read(tmp_path, monkeypatch, capsys):
    # An input that is no cohort at all: were the cohort read first, its error would come out.
    not_a_cohort = tmp_path / "empty"
    not_a_cohort.mkdir()
    read = []
    for name in ("load_cohort", "input_checksums"):
        monkeypatch.setattr(
            f"rsxai.pipeline.runner.{name}", lambda *a, _name=name, **k: read.append(_name)
        )
    address, out = _closed_port(), tmp_path / "out"
    code = main(["run", str(not_a_cohort), str(out), "-q", "--dask-scheduler", address])
    assert code == EXIT_INPUT_ERROR
    message = capsys.readouterr().err
    assert "--dask-scheduler" in message and address in message
    assert "cohort" not in message.lower() and "participants" not in message
    assert read == []  # neither validation nor checksums started
    assert not out.exists()  # as for any bad option: nothing written


def test_the_checked_connection_serves_the_run(cluster, monkeypatch):
    from rsxai import parallel as execution

    connections = []
    connect = execution._connect
    monkeypatch.setattr(
        execution, "_connect", lambda *args: connections.append(args) or connect(*args)
    )
    with execution.cluster_client(cluster.scheduler_address) as client:
        with execution_backend(1, cluster.scheduler_address, client=client) as n_jobs:
            assert n_jobs == -1
            assert Parallel(n_jobs=n_jobs)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
        assert client.status == "running"  # the backend leaves the caller's client open
    assert len(connections) == 1 and client.status == "closed"


@pytest.mark.parametrize("kind", ["silent", "malformed"])
def test_addresses_that_are_not_schedulers_fail_fast(kind):
    server = None
    if kind == "silent":
        server, address = _silent_port()
        accepted = []
        threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    else:
        address = "10.0.0.5"  # no port
    try:
        with (
            pytest.raises(InputError, match=r"run\.dask_scheduler") as error,
            execution_backend(1, address, connect_timeout=1.0),
        ):
            pass
    finally:
        if server is not None:
            server.close()
    assert address in error.value.problems[0]


def test_a_scheduler_without_workers_is_reported():
    with (
        distributed.LocalCluster(
            n_workers=0, processes=True, host="127.0.0.1", dashboard_address=None
        ) as empty,
        pytest.raises(InputError, match=r"no worker after 0\.5 s"),
        execution_backend(1, empty.scheduler_address, worker_timeout=0.5),
    ):
        pass


def test_workers_with_another_rsxai_are_reported(cluster, monkeypatch):
    monkeypatch.setattr("rsxai.parallel.__version__", "0.0.0-elsewhere")
    with (
        pytest.raises(InputError, match=r"must run rsxai 0\.0\.0-elsewhere") as error,
        execution_backend(1, cluster.scheduler_address),
    ):
        pass
    assert f"rsxai {rsxai.__version__}" in error.value.problems[0]


def test_flag_and_configuration_key():
    args = build_parser().parse_args(["run", "in", "out", "--dask-scheduler", "tcp://h:8786"])
    assert resolve_config(overrides=_overrides(args)).run.dask_scheduler == "tcp://h:8786"
    assert resolve_config().run.dask_scheduler is None  # not set: this machine
    assert "dask_scheduler" not in resolve_config().to_toml()


def test_local_execution_changes_nothing():
    with execution_backend(3, None) as n_jobs:
        assert n_jobs == 3
        assert Parallel(n_jobs=1)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
    config = resolve_config(overrides={"run.n_jobs": 2, "run.random_seed": 5})
    changed = with_n_jobs(config, -1)
    assert changed.run.n_jobs == -1 and config.run.n_jobs == 2
    assert changed.run.random_seed == 5 and changed.to_dict()["ica"] == config.to_dict()["ica"]


def _as_dask_hands_over(value, offset: int):
    """``value`` unpickled as Dask does: pickle protocol 5, each array a view into a
    receive buffer, here at ``offset`` bytes from an aligned start."""
    buffers = []
    payload = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    received = []
    for buffer in buffers:
        raw = buffer.raw()
        frame = bytearray(offset + raw.nbytes)
        frame[offset:] = raw
        received.append(memoryview(frame)[offset:])
    return pickle.loads(payload, buffers=received)


def _arrays_of(value) -> list[np.ndarray]:
    """The array attributes of ``value`` that can be misaligned (not those of bytes, e.g. bool)."""
    return [a for a in vars(value).values() if isinstance(a, np.ndarray) and a.dtype.alignment > 1]


@pytest.mark.parametrize("offset", [1, 3])
def test_permutation_batches_compute_on_aligned_arrays(offset, monkeypatch):
    from rsxai.stats import draw_permutations, group_design, max_statistic
    from rsxai.stats.design import PermutedT
    from rsxai.stats.tfce import neighbour_table

    rng = np.random.default_rng(offset)
    mask = np.ones((4, 4, 3), dtype=bool)
    maps = rng.standard_normal((12, mask.sum()))
    maps[:6, :8] += 1.5  # an effect, so that TFCE has clusters to enhance
    design, _ = group_design(np.repeat([1, 0], 6), None)
    model = PermutedT(maps, design)
    batches = [draw_permutations(24, np.ones(12), rng)[i : i + 8] for i in (0, 8, 16)]
    tested = model(batches[0][:1])[0]
    settings = max_statistic.BatchSettings(False, True, neighbour_table(mask), 0.05, 2.0, 0.5)
    received = _as_dask_hands_over((model, tested, settings), offset)
    # What arrives is really misaligned, model, statistic and settings alike...
    assert not any(a.flags.aligned for a in _arrays_of(received[0]))
    assert not received[1].flags.aligned and not received[2].neighbours.flags.aligned
    # ...and the worker function computes on aligned copies only. (With PermutedT's
    # arithmetic NumPy happens to give the same bits either way, as BLAS gets aligned
    # copies; a full-array sum would not, so what is computed on is checked.)
    computed_on = []
    call, summarise = PermutedT.__call__, max_statistic.summarise_batch

    def recording_call(self, permutations):
        computed_on.extend(_arrays_of(self))
        return call(self, permutations)

    def recording_summarise(t, tested, settings):
        computed_on.extend([tested, settings.neighbours])
        return summarise(t, tested, settings)

    monkeypatch.setattr(PermutedT, "__call__", recording_call)
    monkeypatch.setattr(max_statistic, "summarise_batch", recording_summarise)
    expected = max_statistic.run_batches(model, batches, 1.0, tested, settings)
    computed_on.clear()
    got = max_statistic.run_batches(received[0], batches, 1.0, received[1], received[2])
    assert computed_on and all(a.flags.aligned for a in computed_on)
    for ours, theirs in zip(got, expected, strict=True):
        for name in ("max_t", "exceed_counts", "max_tfce"):
            assert getattr(ours, name).tobytes() == getattr(theirs, name).tobytes()
    assert expected[0].max_tfce.max() > 0  # TFCE did enhance something
    # The objects the caller holds are left as they were.
    assert not any(a.flags.aligned for a in _arrays_of(received[0]))


@pytest.mark.parametrize("cv_scope", ["fold", "cohort"])
def test_cross_validation_folds_compute_on_aligned_arrays(cv_scope, monkeypatch):
    from sklearn.base import BaseEstimator
    from sklearn.linear_model import LogisticRegression

    from rsxai.classify import cross_validation as classify
    from rsxai.classify import make_splits

    computed_on: list[np.ndarray] = []

    class CentredMeans(BaseEstimator):
        """A feature step (fold scope): each subject's time average minus the training mean."""

        def fit(self, subjects):
            computed_on.extend(subjects)
            self.mean_ = np.mean([s.mean(axis=0) for s in subjects], axis=0)
            self.network_components_ = {"net": 0}
            return self

        def transform(self, subjects):
            computed_on.extend(subjects)
            return np.stack([s.mean(axis=0) - self.mean_ for s in subjects])[:, None]

    rng = np.random.default_rng(4)
    y = np.repeat([0, 1], 6)
    subjects = [rng.standard_normal((5, 10)) + label for label in y]
    split = make_splits(y, n_splits=3, random_state=1)[0]
    shared = None
    if cv_scope == "cohort":
        shared = classify.fit_features(CentredMeans(), subjects)
    received = _as_dask_hands_over((split, subjects, shared, y), 1)
    # What arrives is really misaligned: the split's indices, the subjects in their
    # list, the shared features and the labels...
    arrived = [received[0].train, received[0].test, *received[1], received[3]]
    arrived += [received[2].maps] if shared is not None else []
    assert not any(a.flags.aligned for a in arrived)

    # ...and the fold's body computes on aligned copies only.
    fit_models = classify._fit_models

    def recording_fit_models(split, features, y, *args):
        computed_on.extend([split.train, split.test, features.maps, y])
        return fit_models(split, features, y, *args)

    monkeypatch.setattr(classify, "_fit_models", recording_fit_models)
    models = {"logistic": LogisticRegression()}
    labels = [f"s{i}" for i in range(y.size)]
    rest = (models, labels, 0, (), True)
    # As cross_validate calls it: in cohort scope the folds get only the shared features.
    step = CentredMeans() if shared is None else None
    expected = classify._run_fold(split, step, subjects if step else None, shared, y, *rest)
    computed_on.clear()
    got = classify._run_fold(
        received[0], step, received[1] if step else None, received[2], received[3], *rest
    )
    fitted_here = split.train.size + y.size if step else 0  # fit, then transform everyone
    assert len(computed_on) == 4 + fitted_here
    assert all(a.flags.aligned for a in computed_on)
    assert got.rows == expected.rows and len(got.rows) == split.test.size
    assert got.heldout["net"].tobytes() == expected.heldout["net"].tobytes()
    if step:
        assert got.maps.tobytes() == expected.maps.tobytes()
    # The objects the caller holds are left as they were.
    assert not any(a.flags.aligned for a in arrived)


def test_with_aligned_arrays_copies_only_what_is_misaligned():
    from rsxai.parallel import with_aligned_arrays
    from rsxai.stats.max_statistic import BatchSettings

    aligned = np.arange(6.0)
    settings = BatchSettings(True, True, np.arange(12).reshape(6, 2), 0.1, 2.0, 0.5)
    assert with_aligned_arrays(aligned) is aligned  # no copy in a local run
    assert with_aligned_arrays(settings) is settings
    misaligned = _as_dask_hands_over((aligned, settings), 1)
    array, fixed = with_aligned_arrays(misaligned[0]), with_aligned_arrays(misaligned[1])
    assert array.flags.aligned and np.array_equal(array, aligned)
    assert fixed is not misaligned[1] and fixed.neighbours.flags.aligned  # a frozen dataclass
    assert np.array_equal(fixed.neighbours, settings.neighbours) and fixed.dh == settings.dh
    assert not misaligned[1].neighbours.flags.aligned
