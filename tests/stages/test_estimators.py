"""The estimators built from the configuration carry its options."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rsxai.config import resolve_config
from rsxai.grid import Grid
from rsxai.networks import NetworkMaps
from rsxai.stages.estimators import network_maps_estimator


@pytest.fixture(scope="module")
def grid():
    return Grid.mni(8)


@pytest.mark.parametrize("value", [False, True])
def test_variance_normalise_reaches_the_network_maps_of_every_stage(grid, value):
    # The dual regression stage reads the option itself; the fold-scope
    # cross-validation gets it through this estimator.
    config = resolve_config(overrides={"dual_regression.variance_normalise": value})
    estimator = network_maps_estimator(SimpleNamespace(config=config, progress=False), grid)
    assert estimator.variance_normalise is value
    assert resolve_config().dual_regression.variance_normalise is False
    assert NetworkMaps(grid).variance_normalise is False
