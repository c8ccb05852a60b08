"""Timing, peak memory in a child process, and a description of the machine.

Peak memory is the peak resident set size (``VmHWM`` on Linux, else
``ru_maxrss``) of a fresh Python process that runs one measured function:
everything the process touched, imported libraries included. The child also
reports its resident size just before the timed call (after its imports and
set-up), so that the memory the work itself needed can be told apart from
the libraries' fixed cost.

A command that starts worker processes (``rsxai run --n-jobs 2``: joblib's
loky workers) is measured by :func:`benchmarks.process_sampling.sample_command`
instead: the memory of the whole process tree, sampled every few tenths of a
second.

:func:`benchmark_parser` is the command line the benchmarks share
(``--quick``, ``--data-dir``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rsxai", "numpy", "scipy", "scikit-learn", "nilearn", "nibabel", "joblib")


def benchmark_parser(
    docstring: str,
    *,
    quick_help: str,
    data_dir_help: str | None = None,
    json_output: bool = False,
    prog: str | None = None,
) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--quick`` and, if it keeps data, ``--data-dir``.

    Parameters
    ----------
    docstring : str
        The benchmark module's docstring; its first line describes it in ``--help``.
    quick_help : str
        ``--help`` text of ``--quick``: what the smoke run makes smaller.
    data_dir_help : str or None, default=None
        ``--help`` text of ``--data-dir`` (its default is appended); None: the
        benchmark keeps no data and takes no ``--data-dir``. Its default is
        ``rsxai-benchmarks`` in the system's temporary folder.
    json_output : bool, default=False
        Add ``--json PATH`` (also write the full result there; see :func:`emit`).
    prog : str or None, default=None
        Program name in the usage line; None: argparse's (the script's name).

    Returns
    -------
    argparse.ArgumentParser
        Add the benchmark's own options to it, then ``parse_args``.
    """
    parser = argparse.ArgumentParser(prog=prog, description=docstring.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    if data_dir_help is not None:
        parser.add_argument(
            "--data-dir",
            default=str(Path(tempfile.gettempdir()) / "rsxai-benchmarks"),
            help=f"{data_dir_help} (default: %(default)s)",
        )
    if json_output:
        parser.add_argument("--json", default=None, help="also write the full result here")
    return parser


def emit(result: dict, text: str, json_path: str | None = None) -> None:
    """Print a benchmark's markdown ``text``; with ``json_path``, write ``result`` there first."""
    if json_path:
        Path(json_path).write_text(json.dumps(result))
    print(text)


def current_rss_mb() -> float:
    """Resident set size of this process now, in MiB (Linux ``/proc``; else the peak)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    On Linux, ``VmHWM`` of ``/proc/self/status``: it starts afresh at
    ``exec``, whereas ``ru_maxrss`` survives it and so would report the
    parent's resident size at ``fork`` when that is larger than the child's.
    """
    hwm = vm_hwm_kib("self")
    if hwm:
        return hwm / 2**10
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


def vm_hwm_kib(pid: int | str) -> int:
    """Peak resident size (``VmHWM``) of process ``pid`` (or ``"self"``) in KiB; 0 if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def timed(function: Callable[[], object]) -> tuple[object, float]:
    """Call ``function()``; return its result and the wall-clock seconds it took."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def run_in_child(target: str, blas_threads: int | None = None, **kwargs) -> dict:
    """Run ``module:function(**kwargs)`` in a fresh Python process; return its dict.

    The function must return a JSON-serialisable dict; ``peak_rss_mb`` (the
    child's peak resident size at exit) is added to it. ``blas_threads``
    sets ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS``
    in the child (None: the environment's, i.e. the libraries' default).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    if blas_threads is not None:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(blas_threads)
    with tempfile.TemporaryDirectory(prefix="rsxai-bench-") as folder:
        arguments = Path(folder) / "arguments.json"
        output = Path(folder) / "result.json"
        arguments.write_text(json.dumps({"target": target, "kwargs": kwargs}))
        completed = subprocess.run(
            [sys.executable, "-m", "benchmarks.measurement", str(arguments), str(output)],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"benchmark child {target} failed (exit {completed.returncode}):\n"
                f"{completed.stderr[-4000:]}"
            )
        return json.loads(output.read_text())


def _child_main(arguments_path: str, output_path: str) -> None:
    request = json.loads(Path(arguments_path).read_text())
    module_name, _, function_name = request["target"].partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    result = dict(function(**request["kwargs"]))
    result["peak_rss_mb"] = peak_rss_mb()
    Path(output_path).write_text(json.dumps(result))


def machine_description() -> dict:
    """CPU model, cores, RAM, load, OS, Python, BLAS and package versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ram_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        ram_gib = float("nan")
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        from threadpoolctl import threadpool_info

        blas = sorted(
            {
                f"{info['internal_api']} {info.get('version')} ({info['num_threads']} threads)"
                for info in threadpool_info()
                if info.get("user_api") == "blas"
            }
        )
    except ImportError:
        blas = []
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_gib": round(ram_gib, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "blas": blas,
        "versions": versions,
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


if __name__ == "__main__":
    _child_main(*sys.argv[1:3])
