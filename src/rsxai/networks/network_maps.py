"""Group ICA, network labelling and dual regression as one fit / transform step.

:class:`NetworkMaps` is what makes leak-free cross-validation a matter of
shape: it is fitted on some subjects (group ICA and the choice of each
network's component) and transforms any subject (dual regression onto the
fitted group maps), the way a scikit-learn ``Pipeline`` step does. The
cross-validation receives it as an argument and fits a fresh clone
(``sklearn.base.clone``) in each training fold, so no held-out subject ever
shapes the group maps it is projected on (unless they are imported, ``group_maps``:
then every fold gets the same maps, whoever they were estimated on).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from numbers import Real
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from rsxai.decomposition import (
    DualRegressionResult,
    GroupICA,
    dual_regression,
    spatial_pseudo_inverse,
)
from rsxai.exceptions import InputError
from rsxai.grid import Grid
from rsxai.networks.labelling import NetworkLabels, NetworkTemplates, canonical_network_name
from rsxai.networks.selection import (
    check_networks_found,
    choose_networks,
    load_group_maps,
    match_reference_maps,
)

SubjectData = np.ndarray | Callable[[], np.ndarray]


logger = logging.getLogger(__name__)


def _load(subject: SubjectData) -> np.ndarray:
    return subject() if callable(subject) else np.asarray(subject)


class NetworkMaps(BaseEstimator):
    """Group ICA + network labelling + dual regression, fitted on training subjects.

    Parameters
    ----------
    grid : Grid
        Analysis grid shared by all subjects' preprocessed data.
    n_components : int or "auto", default=20
        Group ICA dimension.
    networks : sequence of str, default=("sensorimotor", "visual")
        Networks whose component is chosen (canonical names or aliases such as "SMN").
    templates : NetworkTemplates, str, Path or None
        Reference network templates; None uses the built-in ones.
    force : mapping of str to int, optional
        Components chosen by hand, e.g. ``{"visual": 3}``.
    force_maps : mapping of str to ndarray of shape (n_voxels,), optional
        Networks chosen by a reference map instead of the templates: each takes
        the component that correlates best with its map. A component index only
        names a network within one fit (each group ICA orders its components
        anew), so in fold scope a choice forced on the all-subject ICA reaches
        every fold as that component's map.
    min_r : float, default=0.15
        Spatial correlation below which a network is reported as not found.
    group_maps : str, Path or None
        Import group maps (4D NIfTI) instead of running group ICA. ``fit`` then
        learns no maps from ``subjects``: every fold of a cross-validation uses
        the same maps, which may have been estimated with its test subjects
        (the classify stage reports this scope as "external maps").
    n_restarts : int, default=10
        FastICA restarts for the stability estimate.
    migp_dim : int or None
        MIGP internal dimension (default ``min(2 T - 1, 15 K)``; see
        :class:`rsxai.decomposition.group_ica.GroupICA`).
    des_norm : bool, default=True
        Variance-normalise stage-1 time courses before stage 2 (FSL's default).
    variance_normalise : bool, default=False
        Z-score each voxel of a subject before dual regression; by default
        (FSL's) the data are regressed as given, so the maps keep each
        voxel's amplitude. Group ICA normalises every voxel either way.
    random_state : int, default=0
    n_jobs : int, default=1
    progress : bool, default=False

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_voxels)
        Group maps used as dual-regression regressors.
    ica_ : GroupICA or None
        The fitted group ICA (None when maps were imported).
    labels_ : NetworkLabels
        Template match of every component and the chosen ones.
    network_components_ : dict of str to int
        Component index of each requested network.
    force_matches_ : dict of str to dict
        For each network of ``force_maps``: the ``component`` chosen and its
        correlation ``r`` with the reference map.

    Notes
    -----
    A scikit-learn estimator: ``__init__`` stores the parameters, ``fit``
    checks them, ``sklearn.base.clone`` gives a fresh unfitted copy (the
    grid and templates deep-copied), and ``transform`` before ``fit`` raises
    scikit-learn's ``NotFittedError``. Not a transformer of ``X`` arrays:
    ``fit`` and ``transform`` take sequences of subjects.
    """

    def __init__(
        self,
        grid: Grid,
        *,
        n_components: int | str = 20,
        networks: Sequence[str] = ("sensorimotor", "visual"),
        templates: NetworkTemplates | str | Path | None = None,
        force: Mapping[str, int] | None = None,
        force_maps: Mapping[str, np.ndarray] | None = None,
        min_r: float = 0.15,
        group_maps: str | Path | None = None,
        n_restarts: int = 10,
        migp_dim: int | None = None,
        des_norm: bool = True,
        variance_normalise: bool = False,
        random_state: int = 0,
        n_jobs: int = 1,
        progress: bool = False,
    ):
        self.grid = grid
        self.n_components = n_components
        self.networks = networks
        self.templates = templates
        self.force = force
        self.force_maps = force_maps
        self.min_r = min_r
        self.group_maps = group_maps
        self.n_restarts = n_restarts
        self.migp_dim = migp_dim
        self.des_norm = des_norm
        self.variance_normalise = variance_normalise
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.progress = progress

    def fit(self, subjects: Sequence[SubjectData]) -> NetworkMaps:
        """Learn the group maps and choose each network's component.

        Parameters
        ----------
        subjects : sequence of ndarray of shape (T_s, n_voxels) or of callables returning one
            Preprocessed data of the training subjects (callables let data stream from disk).

        Returns
        -------
        self
        """
        # The group ICA parameters are checked by GroupICA itself, when it runs.
        self._validate_params()
        self._maps_pinv = None
        if self.group_maps is not None:
            self.ica_ = None
            self.components_ = load_group_maps(self.group_maps, self.grid)
        else:
            self.ica_ = GroupICA(
                n_components=self.n_components,
                migp_dim=self.migp_dim,
                n_restarts=self.n_restarts,
                random_state=self.random_state,
                n_jobs=self.n_jobs,
                progress=self.progress,
            ).fit(subjects)
            self.components_ = self.ica_.components_
        self.force_matches_ = match_reference_maps(self.components_, self.force_maps or {})
        force = dict(self.force or {})
        for name, match in self.force_matches_.items():
            force[name] = match["component"]
            logger.info(
                "Network %s: component %d (r = %.2f with the reference map) chosen.",
                name,
                match["component"],
                match["r"],
            )
        self.labels_: NetworkLabels = choose_networks(
            self.components_,
            self.grid,
            templates=self.templates,
            networks=self.networks,
            force=force,
            min_r=self.min_r,
        )
        check_networks_found(self.labels_, self.min_r)
        self.network_components_ = {
            name: int(index) for name, index in self.labels_.selected.items()
        }
        return self

    def _validate_params(self) -> None:
        problems = []
        if not isinstance(self.grid, Grid):
            problems.append(f"grid must be an rsxai.grid.Grid; got {type(self.grid).__name__}.")
        if isinstance(self.networks, str) or not (
            isinstance(self.networks, Sequence)
            and self.networks
            and all(isinstance(name, str) for name in self.networks)
        ):
            problems.append(
                "networks must be a non-empty sequence of network names, e.g. "
                f"('sensorimotor', 'visual'); got {self.networks!r}."
            )
        if not (isinstance(self.min_r, Real) and not isinstance(self.min_r, bool)):
            problems.append(f"min_r must be a number; got {self.min_r!r}.")
        both = {canonical_network_name(n) for n in self.force or {}} & {
            canonical_network_name(n) for n in self.force_maps or {}
        }
        if both:
            problems.append(
                f"force and force_maps both choose {', '.join(sorted(map(str, both)))}; "
                "give each network one way of being chosen."
            )
        for name, reference in (self.force_maps or {}).items():
            if np.shape(reference) != (self.grid.n_voxels,):
                problems.append(
                    f"force_maps[{name!r}] must have shape ({self.grid.n_voxels},), one value "
                    f"per voxel of the grid; got {np.shape(reference)}."
                )
        for name in ("des_norm", "variance_normalise"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                problems.append(f"{name} must be True or False; got {getattr(self, name)!r}.")
        if problems:
            raise InputError(problems)

    def _check_fitted(self) -> None:
        check_is_fitted(
            self,
            "components_",
            msg="This %(name)s instance is not fitted yet; call fit(subjects) first.",
        )

    def dual_regress(self, subject: SubjectData) -> DualRegressionResult:
        """Dual regression of one subject onto all group maps.

        Parameters
        ----------
        subject : ndarray of shape (T, n_voxels) or callable returning one

        Returns
        -------
        DualRegressionResult
            ``timecourses`` (T, K), ``maps`` and ``z_maps`` (K, n_voxels).
        """
        self._check_fitted()
        return dual_regression(
            self.components_,
            _load(subject),
            des_norm=self.des_norm,
            variance_normalise=self.variance_normalise,
            maps_pinv=self._pinv(),
        )

    def _pinv(self) -> np.ndarray:
        # Stage 1's operator depends on the group maps only: computed once.
        if getattr(self, "_maps_pinv", None) is None:
            self._maps_pinv = spatial_pseudo_inverse(self.components_)
        return self._maps_pinv

    def transform(self, subjects: Sequence[SubjectData]) -> np.ndarray:
        """Stage-2 maps of the requested networks for each subject.

        Returns
        -------
        maps : ndarray of shape (n_subjects, n_networks, n_voxels)
            In the order of ``networks``; float32.
        """
        self._check_fitted()
        indices = [self.network_components_[name] for name in self.labels_.selected]
        maps = [
            dual_regression(
                self.components_,
                _load(subject),
                des_norm=self.des_norm,
                variance_normalise=self.variance_normalise,
                z_maps=False,
                maps_pinv=self._pinv(),
            ).maps[indices]
            for subject in subjects
        ]
        return np.stack(maps).astype(np.float32)
