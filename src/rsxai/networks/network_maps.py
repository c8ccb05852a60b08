"""Group ICA, network labelling and dual regression as one fit / transform step.

:class:`NetworkMaps` is what makes leak-free cross-validation a matter of
shape: it is fitted on some subjects (group ICA and the choice of each
network's component) and transforms any subject (dual regression onto the
fitted group maps), the way a scikit-learn ``Pipeline`` step does. The
cross-validation receives it as an argument and fits a fresh clone
(``sklearn.base.clone``) in each training fold, so no held-out subject ever
shapes the group maps it is projected on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from numbers import Real
from pathlib import Path

import nibabel as nib
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
from rsxai.networks.labelling import (
    NetworkLabels,
    NetworkTemplates,
    builtin_templates,
    label_components,
    load_templates,
)

SubjectData = np.ndarray | Callable[[], np.ndarray]


def _load(subject: SubjectData) -> np.ndarray:
    return subject() if callable(subject) else np.asarray(subject)


def load_group_maps(path: str | Path, grid: Grid) -> np.ndarray:
    """Read group maps made elsewhere (e.g. MELODIC's ``melodic_IC.nii.gz``) onto the grid.

    Parameters
    ----------
    path : str or Path
        A 4D NIfTI, one volume per component, in MNI space.
    grid : Grid
        The analysis grid.

    Returns
    -------
    maps : ndarray of shape (n_components, n_voxels)
        Resampled by affine (trilinear), float32.
    """
    # Lazy: nilearn's image and plotting modules take about 1 s to import.
    from nilearn import image

    path = Path(path)
    try:
        img = nib.load(path)
    except (OSError, nib.filebasedimages.ImageFileError) as error:
        raise InputError(
            f"{path}: cannot read the group maps ({error}). Give a 4D NIfTI."
        ) from None
    if len(img.shape) != 4:
        raise InputError(
            f"{path}: group maps must be 4D (one volume per component); got shape {img.shape}."
        )
    resampled = image.resample_img(
        img,
        target_affine=grid.affine,
        target_shape=grid.shape,
        interpolation="continuous",
        force_resample=True,
        copy_header=True,
    )
    maps = grid.from_img_data(np.asarray(resampled.dataobj, dtype=np.float32))
    maps = np.nan_to_num(maps)
    empty = np.flatnonzero(np.abs(maps).max(axis=1) == 0)
    if len(empty) == maps.shape[0] or maps.shape[1] == 0:
        raise InputError(
            f"{path}: the group maps do not overlap the analysis brain mask; are they in MNI "
            "space? Resample them to MNI space first."
        )
    if len(empty):
        raise InputError(
            f"{path}: components {empty.tolist()} are empty inside the analysis brain mask. "
            "Remove them or check the image's space."
        )
    return maps


def choose_networks(
    components: np.ndarray,
    grid: Grid,
    *,
    templates: NetworkTemplates | str | Path | None = None,
    networks: Sequence[str] = ("sensorimotor", "visual"),
    force: Mapping[str, int] | None = None,
    min_r: float = 0.15,
) -> NetworkLabels:
    """Label group maps with the templates (built-in when ``templates`` is None).

    Parameters
    ----------
    components : ndarray of shape (K, n_voxels)
        Sign-fixed group maps on ``grid``.
    grid : Grid
    templates, networks, force, min_r
        As :class:`NetworkMaps`.

    Returns
    -------
    NetworkLabels
        A requested network without a matching component has None; see
        :func:`check_networks_found`.
    """
    if not isinstance(templates, NetworkTemplates):
        templates = (
            builtin_templates(grid) if templates is None else load_templates(templates, grid)
        )
    return label_components(
        components,
        templates,
        networks=tuple(networks),
        force=dict(force) if force else None,
        min_r=min_r,
    )


def check_networks_found(labels: NetworkLabels, min_r: float) -> None:
    """Raise InputError naming every requested network left without a component."""
    missing = [name for name, index in labels.selected.items() if index is None]
    if missing:
        raise InputError(
            f"networks: no component matches {', '.join(missing)} (best template r below "
            f"min_r={min_r}). Look at the components and their template matches "
            "(group/desc-ica_components.nii.gz and .tsv), then choose one with "
            f"--force-component {missing[0]}=INDEX, or lower --min-template-r."
        )


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
    min_r : float, default=0.15
        Spatial correlation below which a network is reported as not found.
    group_maps : str, Path or None
        Import group maps (4D NIfTI) instead of running group ICA.
    n_restarts : int, default=10
        FastICA restarts for the stability estimate.
    migp_dim : int or None
        MIGP internal dimension (default ``min(2 T - 1, 15 K)``; see
        :class:`rsxai.decomposition.group_ica.GroupICA`).
    des_norm : bool, default=True
        Variance-normalise stage-1 time courses before stage 2 (FSL's default).
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
        min_r: float = 0.15,
        group_maps: str | Path | None = None,
        n_restarts: int = 10,
        migp_dim: int | None = None,
        des_norm: bool = True,
        random_state: int = 0,
        n_jobs: int = 1,
        progress: bool = False,
    ):
        self.grid = grid
        self.n_components = n_components
        self.networks = networks
        self.templates = templates
        self.force = force
        self.min_r = min_r
        self.group_maps = group_maps
        self.n_restarts = n_restarts
        self.migp_dim = migp_dim
        self.des_norm = des_norm
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
        self.labels_: NetworkLabels = choose_networks(
            self.components_,
            self.grid,
            templates=self.templates,
            networks=self.networks,
            force=self.force,
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
        if not isinstance(self.des_norm, (bool, np.bool_)):
            problems.append(f"des_norm must be True or False; got {self.des_norm!r}.")
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
            self.components_, _load(subject), des_norm=self.des_norm, maps_pinv=self._pinv()
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
                z_maps=False,
                maps_pinv=self._pinv(),
            ).maps[indices]
            for subject in subjects
        ]
        return np.stack(maps).astype(np.float32)
