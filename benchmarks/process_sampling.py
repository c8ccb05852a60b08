"""The memory of a command's whole process tree, sampled while it runs (Linux ``/proc``).

A command that starts worker processes (``rsxai run --n-jobs 2``: joblib's
loky workers) cannot be measured by one process's peak
(:func:`benchmarks.measurement.run_in_child`): :func:`sample_command` runs it
and sums the memory of the command's process and all its descendants every
few tenths of a second; :func:`window_peaks` takes the peaks of a stretch of
the run (one pipeline stage).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.measurement import vm_hwm_kib

__all__ = ["process_memory_kib", "process_tree", "sample_command", "window_peaks"]


def _children_by_parent() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process in ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        # The command name (field 2) may hold spaces and parentheses; the parent pid
        # is the second field after its closing parenthesis.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    return children


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (Linux ``/proc``), root first."""
    children = _children_by_parent()
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree


def process_memory_kib(pid: int) -> dict[str, int] | None:
    """``Rss``, ``Pss`` and ``Pss_Anon`` of one process in KiB, or None when it has ended.

    From ``/proc/PID/smaps_rollup``. PSS (proportional set size) charges each
    page shared by n processes 1/n to each of them, so the PSS of the
    processes of a tree add up to the memory the tree occupies, whereas their
    RSS count shared pages (libraries, memory-mapped files, pages inherited at
    fork) once per process. ``Pss_Anon`` leaves out file-backed pages, which
    the kernel can drop and read back (memory-mapped ``.npy`` files, the
    libraries' code).
    """
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        if name in ("Rss", "Pss", "Pss_Anon"):
            values[name] = int(rest.split()[0])
    if "Rss" not in values:  # a zombie: its memory is already released
        return None
    values.setdefault("Pss", values["Rss"])
    values.setdefault("Pss_Anon", values["Pss"])
    return values


def sample_command(
    command: Sequence[str],
    *,
    interval: float = 0.2,
    rescan: float = 1.0,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    log_dir: str | Path | None = None,
) -> dict:
    """Run ``command`` to its end, sampling its process tree's memory every ``interval`` s.

    Each sample sums, over the command's process and all its descendants
    (e.g. joblib's loky workers), the PSS, the RSS and the anonymous PSS of
    :func:`process_memory_kib`. A peak shorter than ``interval`` can be
    missed, and so can a process that lives less than ``rescan`` seconds;
    ``main_peak_rss_mb`` (``VmHWM`` of the command's own process, as last
    read) is exact for that process alone. The sampling takes CPU time
    (reported) from whatever else runs on the machine.

    Parameters
    ----------
    command : sequence of str
        The command line.
    interval : float
        Seconds between samples.
    rescan : float
        Seconds between look-ups of the process tree in ``/proc``.
    cwd, env
        As for :class:`subprocess.Popen`.
    log_dir : str or Path, optional
        Folder for the command's ``stdout.txt`` and ``stderr.txt`` (default:
        a temporary folder, removed afterwards).

    Returns
    -------
    dict
        ``command``, ``start`` (epoch seconds), ``seconds`` (wall clock),
        ``interval``, ``samples`` (dict of equal-length lists: ``time`` in s
        since ``start``, ``pss_mb``, ``rss_mb``, ``anon_mb``, ``n_processes``),
        ``peak_pss_mb``, ``peak_rss_mb``, ``peak_anon_mb``, ``max_processes``,
        ``main_peak_rss_mb``, ``sampler_cpu_seconds`` (this process's CPU time
        while sampling) and ``stdout`` (the command's output).

    Raises
    ------
    RuntimeError
        When the command exits with a non-zero code (with its last output).
    """
    samples: dict[str, list] = {
        key: [] for key in ("time", "pss_mb", "rss_mb", "anon_mb", "n_processes")
    }
    with tempfile.TemporaryDirectory(prefix="rsxai-bench-cmd-") as folder:
        logs = Path(log_dir or folder)
        logs.mkdir(parents=True, exist_ok=True)
        main_peak_kib = 0
        with open(logs / "stdout.txt", "w") as stdout, open(logs / "stderr.txt", "w") as stderr:
            start = time.time()
            process = subprocess.Popen(
                list(command), cwd=cwd, env=env, stdout=stdout, stderr=stderr
            )
            cpu_start = time.process_time()
            tree: list[int] = []
            next_scan = 0.0
            while True:
                tick = time.perf_counter()
                finished = process.poll() is not None
                if not finished and tick >= next_scan:
                    # Scanning /proc costs more than sampling a few processes; workers
                    # are long-lived, so the tree is looked up less often.
                    tree, next_scan = process_tree(process.pid), tick + rescan
                totals = {"Rss": 0, "Pss": 0, "Pss_Anon": 0}
                n_processes = 0
                for pid in [] if finished else tree:
                    memory = process_memory_kib(pid)
                    if memory is None:
                        continue
                    n_processes += 1
                    for key in totals:
                        totals[key] += memory[key]
                if not finished:
                    main_peak_kib = max(main_peak_kib, vm_hwm_kib(process.pid))
                if n_processes:
                    samples["time"].append(round(time.time() - start, 3))
                    samples["pss_mb"].append(totals["Pss"] / 2**10)
                    samples["rss_mb"].append(totals["Rss"] / 2**10)
                    samples["anon_mb"].append(totals["Pss_Anon"] / 2**10)
                    samples["n_processes"].append(n_processes)
                if finished:
                    break
                time.sleep(max(0.0, interval - (time.perf_counter() - tick)))
            seconds = time.time() - start
            sampler_cpu = time.process_time() - cpu_start
        output = (logs / "stdout.txt").read_text()
        if process.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed (exit {process.returncode}):\n"
                f"{(logs / 'stderr.txt').read_text()[-4000:]}"
            )
    return {
        "command": list(command),
        "start": start,
        "seconds": seconds,
        "interval": interval,
        "samples": samples,
        "peak_pss_mb": max(samples["pss_mb"], default=float("nan")),
        "peak_rss_mb": max(samples["rss_mb"], default=float("nan")),
        "peak_anon_mb": max(samples["anon_mb"], default=float("nan")),
        "max_processes": max(samples["n_processes"], default=0),
        "main_peak_rss_mb": main_peak_kib / 2**10,
        "sampler_cpu_seconds": sampler_cpu,
        "stdout": output,
    }


def window_peaks(samples: dict[str, list], start: float, end: float) -> dict:
    """Largest PSS, RSS, anonymous PSS and process count among samples with start <= time <= end.

    ``samples`` as in :func:`sample_command`'s result; times in seconds since its start.
    """
    chosen = [i for i, t in enumerate(samples["time"]) if start <= t <= end]
    peaks = {"n_samples": len(chosen)}
    for key in ("pss_mb", "rss_mb", "anon_mb", "n_processes"):
        peaks[key] = max((samples[key][i] for i in chosen), default=float("nan"))
    return peaks
