"""Which registry options ``rsxai stats``, ``classify`` and ``explain`` take (as ``rsxai run``)."""

from __future__ import annotations

from rsxai.config.options import OPTIONS

_SUBJECT_OPTIONS = ("input.group_column", "input.positive_label", "input.min_per_group")


#: Registry options of ``rsxai stats`` (flags and defaults as in ``rsxai run``).
STATS_OPTIONS: tuple[str, ...] = (
    *_SUBJECT_OPTIONS,
    *(option.key for option in OPTIONS if option.section == "stats"),
    "run.random_seed",
    "run.n_jobs",
    "run.dask_scheduler",
)


#: Registry options of ``rsxai classify``; the maps are given, so no cv_scope or fold ICA.
CLASSIFY_OPTIONS: tuple[str, ...] = (
    *_SUBJECT_OPTIONS,
    *(
        option.key
        for option in OPTIONS
        if option.section == "classify" and option.name not in ("cv_scope", "fold_ica_restarts")
    ),
    "run.random_seed",
    "run.n_jobs",
    "run.dask_scheduler",
    "run.device",
)


#: The options ``rsxai explain`` takes as flags; those written back to rsxai.toml.
EXPLAIN_KEYS = (
    *(option.key for option in OPTIONS if option.section == "explain"),
    "run.device",
)
