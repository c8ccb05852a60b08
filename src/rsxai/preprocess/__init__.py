"""Per-subject cleaning: confounds, detrend, band-pass, smoothing, resampling; the common mask."""

from rsxai.preprocess.confounds import load_confounds
from rsxai.preprocess.mask import common_mask
from rsxai.preprocess.prepare import prepare_subject, resample_to_grid
from rsxai.preprocess.signal import clean_signals, filter_min_volumes, filtered_length

__all__ = [
    "clean_signals",
    "common_mask",
    "filter_min_volumes",
    "filtered_length",
    "load_confounds",
    "prepare_subject",
    "resample_to_grid",
]
