"""Benchmarks of rsxai against the tools its users know (nilearn) and against bare I/O.

``python -m benchmarks`` runs them all and rewrites BENCHMARKS.md; each module
also runs alone (``python -m benchmarks.group_ica``) and takes ``--quick``:

- :mod:`benchmarks.group_ica`: GroupICA vs nilearn CanICA (time, peak memory,
  match to the planted networks) on the simulated cohort, at 150 and 300 volumes;
- :mod:`benchmarks.migp_dimension`: MIGP's group PCA against the exact one at
  each internal dimension m (accuracy and time);
- :mod:`benchmarks.signal_cleaning`: ``clean_signals`` vs ``nilearn.signal.clean``;
- :mod:`benchmarks.network_maps`: preprocessing + dual regression vs reading the data;
- :mod:`benchmarks.migp_memory`: group ICA peak memory from 60 to 600 subjects;
- :mod:`benchmarks.permutation_stats`: TFCE permutations vs nilearn ``permuted_ols``;
- :mod:`benchmarks.baselines`: linear baselines and their permutation nulls;
- :mod:`benchmarks.cnn_training`: CNN training throughput vs the arithmetic limit;
- :mod:`benchmarks.attribution`: the explanation methods' time;
- :mod:`benchmarks.cv_scope`: the classify stage in fold scope vs cohort scope;
- :mod:`benchmarks.demo`: ``rsxai demo`` end to end (time and memory per stage);
- :mod:`benchmarks.scale`: 600 subjects through group ICA and dual regression.

Helpers: :mod:`benchmarks.cohort` (the simulated cohort, made once and kept),
:mod:`benchmarks.measurement` (child processes, peak memory, machine description),
:mod:`benchmarks.process_sampling` (the memory of a command's process tree),
:mod:`benchmarks.fwe_agreement` (FWE p-values compared within Monte-Carlo error).
"""
