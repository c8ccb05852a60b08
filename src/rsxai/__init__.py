"""rsxai: explainable classification of resting-state fMRI in two groups."""

from rsxai._version import __version__

__all__ = ["__version__"]
