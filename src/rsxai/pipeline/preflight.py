"""The options whose valid range depends on the cohort, checked before the first stage.

Each check applies the rule of the stage that would otherwise fail late (after
preprocessing, group ICA or dual regression), reusing its function and wording
where it has one, so that one bad command lists all its problems at once and
nothing is written.
"""

from __future__ import annotations

from rsxai.classify import make_splits
from rsxai.cohort import Cohort
from rsxai.config import STAGES, Config
from rsxai.exceptions import InputError
from rsxai.networks import network_name_problems
from rsxai.stages import forced_components, stats_covariates

# Default MIGP dimension: 2 T - 1 (MELODIC's), T the volumes of the first subject read.
_MIGP_VOLUMES_FACTOR = 2


def check_config_against_cohort(
    config: Config, cohort: Cohort, *, given_maps: bool = False
) -> list[str]:
    """Every problem of the options that the cohort makes invalid; empty if none.

    The options that need no cohort: :func:`check_config`.

    Parameters
    ----------
    config : Config
        Resolved configuration.
    cohort : Cohort
        The validated cohort (runs with ``n_volumes`` set), or an FSL
        dual_regression folder's.
    given_maps : bool, default=False
        Whether the group maps are given (an FSL dual_regression folder): no group
        ICA runs, so neither its dimension nor the forced indices' upper bound is checked.

    Returns
    -------
    list of str
        One message per problem, naming the option, the allowed values and what was given.
    """
    last = STAGES.index(config.run.stop_after)
    problems = []
    if last >= STAGES.index("ica") and not (given_maps or config.ica.group_maps):
        problems += _ica_problems(config, cohort)
    if last >= STAGES.index("stats"):
        problems += _errors_of(
            stats_covariates, config.stats, cohort.covariates, "participants.tsv"
        )
    if last >= STAGES.index("classify"):
        options = config.classify
        problems += _errors_of(
            make_splits, cohort.y, scheme=options.cv_scheme, n_splits=options.cv_folds
        )
    return problems


def check_config(config: Config, *, given_maps: bool = False) -> list[str]:
    """Problems of the options that need no cohort, checked before the cohort is read.

    The cohort's validation already uses ``n_jobs`` (its data checks run in parallel),
    and these problems are found in no time, before a long validation.

    Parameters
    ----------
    config : Config
        Resolved configuration.
    given_maps : bool, default=False
        As in :func:`check_config_against_cohort`.

    Returns
    -------
    list of str
        One message per problem, naming the option, the allowed values and what was given.
    """
    problems = _n_jobs_problems(config.run.n_jobs)
    if STAGES.index(config.run.stop_after) >= STAGES.index("ica"):
        problems += _network_problems(config, given_maps or bool(config.ica.group_maps))
    return problems


def _errors_of(function, *args, **kwargs) -> list[str]:
    """The problems ``function`` raises as InputError, so that all of them are listed."""
    try:
        function(*args, **kwargs)
    except InputError as error:
        return list(error.problems)
    return []


def _n_jobs_problems(n_jobs: int) -> list[str]:
    # joblib gives 0 no meaning; below -1 it means "all cores but some", which the
    # option's help does not promise.
    if n_jobs >= 1 or n_jobs == -1:
        return []
    return [f"--n-jobs must be >= 1 or -1 (all cores); got {n_jobs}."]


def _n_components_limit(cohort: Cohort, migp_dim: int | None) -> tuple[int, str] | None:
    """Largest K group ICA could give these data, and why; None when not known yet."""
    volumes = [[run.n_volumes for run in subject.runs] for subject in cohort.subjects]
    if not all(volumes) or any(n is None for runs in volumes for n in runs):
        return None
    # Upper bounds only (censoring and the mask can lower them): never refuse a run
    # that group ICA would accept.
    per_subject = [sum(runs) for runs in volumes]
    total = sum(per_subject)
    limits = {
        f"volumes after temporal demeaning ({total} volumes minus one per subject)": total
        - len(per_subject)
    }
    if migp_dim is not None:
        limits[f"migp_dim ({migp_dim}; raise --migp-dim)"] = migp_dim
    else:
        default = _MIGP_VOLUMES_FACTOR * max(per_subject) - 1
        limits[
            f"the default MIGP dimension (2 x {max(per_subject)} volumes - 1 = {default}; "
            "raise it with --migp-dim)"
        ] = default
    reason, limit = min(limits.items(), key=lambda item: item[1])
    return limit, reason


def _ica_problems(config: Config, cohort: Cohort) -> list[str]:
    n_components = config.ica.n_components
    if n_components == "auto":
        return []
    found = _n_components_limit(cohort, config.ica.migp_dim)
    if found is None or n_components <= found[0]:
        return []
    limit, reason = found
    return [
        f"--n-components must be between 1 and {limit} for these data; got {n_components}. "
        f"The limit is {reason}. Lower --n-components or use --n-components auto."
    ]


def _network_problems(config: Config, given_maps: bool) -> list[str]:
    options = config.networks
    # A user's template file names its networks; they are checked once it is read.
    builtin = options.templates is None
    problems = network_name_problems(options.networks, "--networks") if builtin else []
    try:
        forced = forced_components(options.force_component)
    except InputError as error:
        return problems + list(error.problems)
    if builtin:
        problems += network_name_problems(list(forced), "--force-component")
    n_components = config.ica.n_components
    # With 'auto' or given group maps, K is known only once the maps are.
    exact = n_components != "auto" and not given_maps
    for name, index in forced.items():
        if index < 0 or (exact and index >= n_components):
            allowed = (
                f"from 0 to {n_components - 1} (--n-components {n_components})"
                if exact
                else ">= 0"
            )
            problems.append(
                f"--force-component {name}={index}: the component index must be {allowed}; "
                f"got {index}. Components are numbered from 0 in group/desc-ica_components.tsv."
            )
    duplicated = sorted({i for i in forced.values() if list(forced.values()).count(i) > 1})
    for index in duplicated:
        problems.append(
            f"--force-component: component {index} is forced for two networks; one "
            "component can serve only one network."
        )
    return problems
