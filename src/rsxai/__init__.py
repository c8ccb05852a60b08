"""rsxai: explainable classification of resting-state fMRI in two groups.

The names a user starts from are here; every stage's own names are in its
subpackage (:mod:`rsxai.cohort`, :mod:`rsxai.preprocess`, :mod:`rsxai.decomposition`,
:mod:`rsxai.networks`, :mod:`rsxai.stats`, :mod:`rsxai.classify`, :mod:`rsxai.cnn`,
:mod:`rsxai.explain`, :mod:`rsxai.report`, :mod:`rsxai.pipeline`).

>>> import rsxai
>>> sorted(rsxai.__all__)[:3]
['CNNClassifier', 'Cohort', 'GroupICA']
"""

from importlib import import_module

from rsxai._version import __version__

# Loaded on first use (PEP 562), not by ``import rsxai``: the stages bring in PyTorch,
# nilearn and scikit-learn (seconds), which ``rsxai --version`` or ``rsxai report`` never need.
_FACES = {
    "run": "rsxai.pipeline",
    "Config": "rsxai.config",
    "resolve_config": "rsxai.config",
    "Cohort": "rsxai.cohort",
    "simulate_cohort": "rsxai.simulate",
    "load_ground_truth": "rsxai.simulate",
    "prepare_subject": "rsxai.preprocess",
    "GroupICA": "rsxai.decomposition",
    "dual_regression": "rsxai.decomposition",
    "NetworkMaps": "rsxai.networks",
    "permutation_glm": "rsxai.stats",
    "cross_validate": "rsxai.classify",
    "LinearBaseline": "rsxai.classify",
    "CNNClassifier": "rsxai.cnn",
    "explain_subjects": "rsxai.explain",
    "write_report": "rsxai.report",
}

__all__ = ["__version__", *_FACES]


def __getattr__(name: str):
    try:
        face = _FACES[name]
    except KeyError:
        raise AttributeError(f"module 'rsxai' has no attribute {name!r}") from None
    value = getattr(import_module(face), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FACES))
