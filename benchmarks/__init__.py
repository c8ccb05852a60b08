"""Benchmarks of rsxai against the tools its users know (nilearn) and against bare I/O.

``python -m benchmarks`` runs them all and rewrites BENCHMARKS.md; each module
also runs alone (``python -m benchmarks.group_ica``) and takes ``--quick``:

- :mod:`benchmarks.group_ica`: GroupICA vs nilearn CanICA (time, peak memory,
  match to the planted networks) on the simulated cohort;
- :mod:`benchmarks.signal_cleaning`: ``clean_signals`` vs ``nilearn.signal.clean``;
- :mod:`benchmarks.network_maps`: preprocessing + dual regression vs reading the data;
- :mod:`benchmarks.migp_memory`: group ICA peak memory from 60 to 600 subjects.

Helpers: :mod:`benchmarks.cohort` (the simulated cohort, made once and kept),
:mod:`benchmarks.measurement` (child processes, peak memory, machine description).
"""
