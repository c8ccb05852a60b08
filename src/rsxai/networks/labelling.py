"""Name the group-ICA components: match each one to resting-state network templates.

:func:`label_components` correlates every component with every template
(:mod:`rsxai.networks.templates`) and picks one component per requested
network, by canonical name or alias (:data:`NETWORK_ALIASES`).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from rsxai.exceptions import InputError
from rsxai.networks.templates import (
    SEITZMAN_NETWORKS,
    NetworkTemplates,
    builtin_templates,
    load_templates,
)

__all__ = [
    "NETWORK_ALIASES",
    "NetworkLabels",
    "NetworkTemplates",
    "builtin_templates",
    "canonical_network_name",
    "label_components",
    "load_templates",
    "network_name_problems",
]

# Other names of the canonical networks. Look-ups ignore case and punctuation,
# so "Default mode", "default-mode" and "DefaultMode" all find "default_mode".
NETWORK_ALIASES: dict[str, str] = {
    "SMN": "sensorimotor",
    "SM": "sensorimotor",
    "motor": "sensorimotor",
    "somatomotor": "sensorimotor",
    "VN": "visual",
    "VIS": "visual",
    "DMN": "default_mode",
    "DN": "default_mode",
    "default": "default_mode",
    "FPN": "frontoparietal",
    "FPCN": "frontoparietal",
    "ECN": "frontoparietal",
    "control": "frontoparietal",
    "DAN": "dorsal_attention",
    "DorsAttn": "dorsal_attention",
    "VAN": "ventral_attention",
    "VenAttn": "ventral_attention",
    "SAL": "salience",
    "SN": "salience",
    "CON": "cingulo_opercular",
    "CO": "cingulo_opercular",
    "AUD": "auditory",
    "MTL": "medial_temporal",
    "medial_temporal_lobe": "medial_temporal",
    "PMN": "parietomedial",
    "parietal_memory": "parietomedial",
    **{seitzman: name for name, parts in SEITZMAN_NETWORKS.items() for seitzman in parts},
}


def _normalized(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


_CANONICAL_BY_KEY = {_normalized(name): name for name in SEITZMAN_NETWORKS} | {
    _normalized(alias): name for alias, name in NETWORK_ALIASES.items()
}


def canonical_network_name(name: str) -> str | None:
    """Canonical lower_snake_case name of a network, or None for an unknown name.

    >>> canonical_network_name("SMN"), canonical_network_name("Default Mode")
    ('sensorimotor', 'default_mode')
    """
    return _CANONICAL_BY_KEY.get(_normalized(name))


@dataclass(frozen=True)
class NetworkLabels:
    """What :func:`label_components` found.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per component: ``component``, ``network`` (best-correlated
        template), ``r``, ``second_network``, ``second_r``.
    selected : dict of str to int or None
        Requested network (canonical name when it has one) -> chosen component
        index, None when no component matched well enough.
    selected_r : dict of str to float
        Correlation of the chosen component with the network's template; NaN
        when none was chosen.
    warnings : list of str
        Problems worth a look (weak or missing networks), one line each.
    """

    table: pd.DataFrame
    selected: dict[str, int | None]
    selected_r: dict[str, float]
    warnings: list[str] = field(default_factory=list)


def _resolve_network(name: str, templates: NetworkTemplates, option: str) -> tuple[str, int]:
    """(key used in the results, template row) for a requested network name."""
    canonical = canonical_network_name(name)
    if name in templates.names:
        return canonical or name, templates.names.index(name)
    rows = [
        row
        for row, template in enumerate(templates.names)
        if _normalized(template) == _normalized(name)
        or (canonical is not None and canonical_network_name(template) == canonical)
    ]
    if len(rows) == 1:
        return canonical or templates.names[rows[0]], rows[0]
    if rows:
        raise InputError(
            f"{option}: '{name}' matches several templates "
            f"({', '.join(templates.names[row] for row in rows)}); ask for one by its name."
        )
    known = [
        template
        if canonical_network_name(template) in (None, template)
        else f"{template} ({canonical_network_name(template)})"
        for template in templates.names
    ]
    raise InputError(
        f"{option}: unknown network '{name}'. Known networks: {', '.join(known)} "
        f"(aliases such as SMN, VN, DMN are accepted)."
    )


def network_name_problems(
    names: Sequence[str], option: str, template_names: Sequence[str] | None = None
) -> list[str]:
    """Problems of requested network names, by the rules of :func:`label_components`.

    Checks the names before any work (no maps needed): each must name one template,
    by its name, canonical name or an alias.

    Parameters
    ----------
    names : sequence of str
        Requested networks.
    option : str
        The option they come from, for the messages (e.g. ``"--networks"``).
    template_names : sequence of str, optional
        The templates' names; default: the built-in templates'.

    Returns
    -------
    list of str
        One message per unknown or ambiguous name; empty when all are known.
    """
    if template_names is None:
        template_names = tuple(SEITZMAN_NETWORKS)
    templates = NetworkTemplates(tuple(template_names), np.zeros((len(template_names), 1)))
    problems = []
    for name in names:
        try:
            _resolve_network(name, templates, option)
        except InputError as error:
            problems.extend(error.problems)
    return problems


def _correlations(components: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """Pearson r across voxels, shape (K, N); 0 for a constant row."""

    def standardized(rows):
        centred = rows - rows.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(centred, axis=1, keepdims=True)
        return np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)

    return standardized(components) @ standardized(maps).T


def label_components(
    components: np.ndarray,
    templates: NetworkTemplates,
    *,
    networks: Sequence[str] = ("sensorimotor", "visual"),
    force: Mapping[str, int] | None = None,
    min_r: float = 0.15,
) -> NetworkLabels:
    """Match components to network templates and choose one component per requested network.

    Every component is correlated (Pearson, across the masked voxels) with
    every template; the sign counts, so components must be sign-fixed
    (positive tail = the network), as :class:`~rsxai.decomposition.group_ica.GroupICA` returns
    them. The requested networks are given distinct components maximising the
    sum of their correlations (``scipy.optimize.linear_sum_assignment``) over
    the pairs with ``r >= min_r``, so that one component never serves two
    networks; a network left without such a component gets None and a warning
    naming the best r found and how to force a choice. Forced components are
    taken first and serve no other network.

    Parameters
    ----------
    components : ndarray of shape (K, n_voxels)
        Group maps on the same grid as ``templates``.
    templates : NetworkTemplates
        Maps of shape (N, n_voxels).
    networks : sequence of str
        Networks to choose components for: template names, canonical names or
        aliases (:data:`NETWORK_ALIASES`).
    force : mapping of str to int, optional
        Network -> component index, overriding the automatic choice (the
        network is added to ``networks`` when missing).
    min_r : float
        Smallest correlation accepted for an automatic choice.

    Returns
    -------
    NetworkLabels
    """
    components = np.asarray(components, dtype=np.float64)
    maps = np.asarray(templates.maps, dtype=np.float64)
    if components.ndim != 2 or components.shape[1] != maps.shape[1] or not len(components):
        raise InputError(
            f"components: expected shape (n_components, {maps.shape[1]}) on the templates' "
            f"grid; got {components.shape}. Build the templates on the components' grid."
        )
    if not -1.0 <= float(min_r) <= 1.0:
        raise InputError(f"min_r: must be a correlation between -1 and 1; got {min_r!r}.")
    n_components = components.shape[0]
    r = _correlations(components, maps)

    order = np.argsort(-r, axis=1, kind="stable")
    has_second = maps.shape[0] > 1
    table = pd.DataFrame(
        {
            "component": np.arange(n_components),
            "network": [templates.names[row[0]] for row in order],
            "r": r[np.arange(n_components), order[:, 0]],
            "second_network": [templates.names[row[1]] if has_second else None for row in order],
            "second_r": r[np.arange(n_components), order[:, 1]] if has_second else np.nan,
        }
    )

    requested: dict[str, int] = {}
    for name in (networks,) if isinstance(networks, str) else networks:
        key, row = _resolve_network(name, templates, "networks")
        requested.setdefault(key, row)
    forced: dict[str, int] = {}
    for name, index in (force or {}).items():
        key, row = _resolve_network(name, templates, "force")
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise InputError(
                f"force['{name}'] (--force-component {name}=INDEX): component index must be "
                f"an integer; got {index!r}."
            )
        if not 0 <= index < n_components:
            raise InputError(
                f"force['{name}'] (--force-component {name}=INDEX): component index must be "
                f"from 0 to {n_components - 1} ({n_components} components); got {index}. The "
                "components are numbered from 0 in group/desc-ica_components.tsv."
            )
        if int(index) in forced.values():
            raise InputError(
                f"force: component {index} is forced for two networks; one component can "
                "serve only one network."
            )
        requested.setdefault(key, row)
        forced[key] = int(index)

    selected: dict[str, int | None] = dict.fromkeys(requested)
    selected_r: dict[str, float] = dict.fromkeys(requested, float("nan"))
    messages: list[str] = []
    for key, index in forced.items():
        selected[key], selected_r[key] = index, float(r[index, requested[key]])

    free_components = np.setdiff1d(np.arange(n_components), list(forced.values()))
    free_networks = [key for key in requested if key not in forced]
    free_r = r[np.ix_(free_components, [requested[key] for key in free_networks])]
    # Maximum-weight matching over the pairs with r >= min_r only, so that no
    # component is held by a network that then rejects it; the shift keeps
    # every allowed weight above the 0 of a forbidden pair when min_r < 0.
    weights = np.where(free_r >= min_r, free_r - min(float(min_r), 0.0), 0.0)
    rows, columns = linear_sum_assignment(weights, maximize=True)
    for row, column in zip(rows, columns, strict=True):
        if free_r[row, column] >= min_r:
            key = free_networks[column]
            selected[key], selected_r[key] = int(free_components[row]), float(free_r[row, column])
    owner = {index: key for key, index in selected.items() if index is not None}

    for key in free_networks:
        template = requested[key]
        best = int(np.argmax(r[:, template]))
        fix = f"look at the table and force one with force={{'{key}': <index>}}"
        taken = (
            f"its best match, component {best} with r = {r[best, template]:.2f}, "
            f"serves {owner[best]}"
            if best in owner and owner[best] != key
            else ""
        )
        index = selected[key]
        if index is None:
            unused = np.setdiff1d(np.arange(n_components), list(owner))
            if unused.size == 0:
                messages.append(f"{key}: no component left (all serve other networks); {fix}.")
                continue
            candidate = int(unused[np.argmax(r[unused, template])])
            messages.append(
                f"{key}: no component matches its template well; the best free one is "
                f"component {candidate} with r = {r[candidate, template]:.2f} < min_r = "
                f"{min_r:.2f}{f' ({taken})' if taken else ''}. Nothing was chosen; {fix}."
            )
        elif taken:
            messages.append(
                f"{key}: chose component {index} (r = {selected_r[key]:.2f}); {taken}."
            )
        elif table.at[index, "network"] != templates.names[template]:
            messages.append(
                f"{key}: chose component {index} (r = {selected_r[key]:.2f}), but it matches "
                f"{table.at[index, 'network']} better (r = {table.at[index, 'r']:.2f}); "
                f"check it, or {fix}."
            )
    for message in messages:
        warnings.warn(message, UserWarning, stacklevel=2)
    return NetworkLabels(table, selected, selected_r, messages)
