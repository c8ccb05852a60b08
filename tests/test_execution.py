"""Execution on a Dask cluster: the same outputs as a local run, clear errors for bad addresses."""

from __future__ import annotations

import hashlib
import socket
import threading
from pathlib import Path

import pytest
from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits

import rsxai
from rsxai.cli import EXIT_INPUT_ERROR, _overrides, main
from rsxai.cli_parser import build_parser
from rsxai.config import resolve_config
from rsxai.exceptions import InputError
from rsxai.execution import execution_backend, with_n_jobs
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
    monkeypatch.setattr("rsxai.execution.__version__", "0.0.0-elsewhere")
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
