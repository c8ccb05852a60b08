"""Timing, peak memory in a child process, and a description of the machine.

Peak memory is the peak resident set size (``VmHWM`` on Linux, else
``ru_maxrss``) of a fresh Python process that runs one measured function:
everything the process touched, imported libraries included. The child also
reports its resident size just before the timed call (after its imports and
set-up), so that the memory the work itself needed can be told apart from
the libraries' fixed cost.
"""

from __future__ import annotations

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
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


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
