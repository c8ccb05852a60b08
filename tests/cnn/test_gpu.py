"""`--device cuda`: training and explanations on a GPU.

The GPU tests skip, saying why, on machines without CUDA (CI and the 2-core
development machines). What can be checked everywhere is checked: asking for
a GPU that is not there stops a run before any work, with a clear message.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rsxai.cli import EXIT_INPUT_ERROR, main
from rsxai.cnn import CNNClassifier
from rsxai.explain import attribute
from tests.cnn.test_classifier import FAST, MASK, planted_maps

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA GPU visible to PyTorch (install a CUDA build of torch on a GPU machine)",
)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: nothing to refuse")
def test_cuda_without_a_gpu_stops_before_any_work(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "out"
    assert main(["run", str(data), str(out), "--device", "cuda", "-q"]) == EXIT_INPUT_ERROR
    err = capsys.readouterr().err
    assert "finds no CUDA GPU" in err and "Traceback" not in err
    assert not out.exists()


@needs_cuda
def test_cnn_learns_on_the_gpu_as_on_the_cpu():
    X, y, _ = planted_maps(40, 5.0, seed=0)
    X_test, y_test, _ = planted_maps(200, 5.0, seed=1)
    gpu = CNNClassifier(MASK, **{**FAST, "device": "cuda"}).fit(X, y)
    cpu = CNNClassifier(MASK, **FAST).fit(X, y)
    assert next(gpu.model_.parameters()).is_cuda
    assert np.mean(gpu.predict(X_test) == y_test) >= 0.8
    # Same seed, same data: GPU kernels round differently, so close, not bitwise.
    assert np.mean(gpu.predict(X_test) == cpu.predict(X_test)) >= 0.9


@needs_cuda
@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "gradcam++"])
def test_attributions_on_the_gpu_equal_the_cpu(method):
    X, y, _ = planted_maps(20, 5.0, seed=2)
    clf = CNNClassifier(MASK, **FAST).fit(X, y)
    from rsxai.cnn import maps_to_volumes

    volumes = maps_to_volumes(X[:4], MASK)  # (4, 1, X, Y, Z)
    layer = clf.target_layer_ if method.startswith("gradcam") else None
    on_cpu = attribute(clf.model_, volumes, method=method, target=1, layer=layer)
    on_gpu = attribute(clf.model_.to("cuda"), volumes, method=method, target=1, layer=layer)
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-3, atol=1e-5 * np.abs(on_cpu).max())
