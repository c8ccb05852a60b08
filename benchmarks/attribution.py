"""Time of every attribution method for a cohort's held-out subjects at 4 mm.

Two CNNs explain 60 volumes of the shape the classifier receives at 4 mm:
one channel over the bounding box of the MNI brain mask on the 4 mm grid
(``Grid(mni_brain_mask(4), affine).bounding_box()``: 36 x 45 x 39), which is
how :mod:`rsxai.cnn.inputs` crops the maps; random weights, evaluation mode:

- ``full-resolution``: three blocks of 3x3x3 convolution (the first on the
  input grid), batch normalisation, ReLU and 2x2x2 max pooling, 8, 16 and 32
  channels, global average pooling and a linear layer to two classes: the
  costlier kind of model, whose first layer runs at full resolution;
- ``MapCNN3D``: rsxai's default classifier (:func:`rsxai.cnn.architectures.build_model`
  ``("cnn3d")``: a stride-2 stem, three blocks, a linear head).

:func:`rsxai.explain.attribution.attribute` runs at its defaults (SmoothGrad 16
samples, Integrated Gradients 16 steps, batch size 8, Grad-CAM and Grad-CAM++
at the default layer, :func:`rsxai.explain.gradcam.default_target_layer`, which
depends on the input shape: the layer and its feature maps' spatial shape
are reported), once for the predicted class and once for the patient
class (class 1), as the explain stage does. Everything runs in a fresh
process per thread setting (``torch.set_num_threads``: 1, then 2); after a
warm-up call per method on one volume, each timing is one call on all
volumes. Wall-clock and CPU time (the process's, all threads) are both
reported: on a machine busy with other work the first grows, the second much
less, and two threads can be slower than one (each waits for the other).

Run alone: ``python -m benchmarks.attribution [--quick] [--threads N ...]``.
"""

from __future__ import annotations

import os
import time

from benchmarks.measurement import benchmark_parser, current_rss_mb, run_in_child

VOXEL_SIZE = 4.0
FULL = {"n_inputs": 60}
QUICK = {"n_inputs": 4}
MODELS = ("full-resolution", "MapCNN3D")
TARGETS = ("predicted", "patient")
# Forward and backward passes per input volume at the defaults.
PASSES = {
    "saliency": 1,
    "smoothgrad": 16,
    "integrated_gradients": 16,
    "gradcam": 1,
    "gradcam++": 1,
}
BUDGET_SECONDS = 60.0


def full_resolution_cnn(width: int = 8, n_blocks: int = 3):
    """The first model of the module docstring, in evaluation mode."""
    from torch import nn

    layers = []
    in_channels = 1
    for index in range(n_blocks):
        out_channels = width * 2**index
        block = nn.Sequential()
        block.conv = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        block.norm = nn.BatchNorm3d(out_channels)
        block.act = nn.ReLU(inplace=True)
        block.pool = nn.MaxPool3d(2)
        layers.append(block)
        in_channels = out_channels
    model = nn.Sequential()
    model.blocks = nn.Sequential(*layers)
    model.gap = nn.AdaptiveAvgPool3d(1)
    model.flatten = nn.Flatten()
    model.head = nn.Sequential()
    model.head.fc = nn.Linear(in_channels, 2)
    return model.eval()


def cnn_input_shape(voxel_size: float = VOXEL_SIZE) -> tuple[int, int, int]:
    """Spatial shape of the CNN's input: the MNI brain mask's bounding box at ``voxel_size``."""
    from rsxai.grid import Grid, mni_brain_mask, mni_grid

    affine, _ = mni_grid(voxel_size)
    box = Grid(mni_brain_mask(voxel_size), affine).bounding_box()
    return tuple(int(part.stop - part.start) for part in box)


def layer_spatial_shape(model, layer: str, shape: tuple[int, ...]) -> list[int]:
    """Spatial shape of ``layer``'s output for one input volume of spatial ``shape``."""
    import torch

    from rsxai.explain import resolve_layer

    seen = []
    handle = resolve_layer(model, layer).register_forward_hook(
        lambda module, args, output: seen.append(list(output.shape[2:]))
    )
    try:
        with torch.no_grad():
            model(torch.zeros((1, 1, *shape)))
    finally:
        handle.remove()
    return seen[-1]


def _build(name: str, shape: tuple[int, ...], seed: int):
    import torch

    torch.manual_seed(seed)
    if name == "full-resolution":
        return full_resolution_cnn()
    from rsxai.cnn import build_model

    return build_model("cnn3d", in_shape=shape).eval()


def time_methods(n_inputs: int, shape: list[int], threads: int = 2, seed: int = 0) -> dict:
    """Child process: every method on ``n_inputs`` seeded volumes, both models and targets."""
    import numpy as np
    import torch
    from scipy.ndimage import gaussian_filter

    from rsxai.explain import METHODS, attribute, default_target_layer

    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    volumes = gaussian_filter(rng.normal(size=(n_inputs, *shape)), sigma=(0, 1, 1, 1))
    inputs = torch.as_tensor(volumes[:, None], dtype=torch.float32)
    results = {}
    for name in MODELS:
        model = _build(name, tuple(shape), seed)
        with torch.no_grad():
            targets = {"predicted": model(inputs).argmax(dim=1).numpy(), "patient": 1}
        for method in METHODS:  # warm-up: imports, one-off allocations
            attribute(model, inputs[:1], method=method, target=0, n_samples=2, n_steps=2)
        seconds, cpu_seconds = {}, {}
        for method in METHODS:
            seconds[method], cpu_seconds[method] = {}, {}
            for target_name in TARGETS:
                wall, cpu = time.perf_counter(), time.process_time()
                maps = attribute(model, inputs, method=method, target=targets[target_name])
                seconds[method][target_name] = time.perf_counter() - wall
                cpu_seconds[method][target_name] = time.process_time() - cpu
                if not np.isfinite(maps).all():
                    raise RuntimeError(f"{name}: {method} gave non-finite maps")
        layer = default_target_layer(model, shape)
        results[name] = {
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "layer": layer,
            "layer_shape": layer_spatial_shape(model, layer, tuple(shape)),
            "n_parameters": sum(p.numel() for p in model.parameters()),
        }
    return {"models": results, "threads": threads, "rss_after_mb": current_rss_mb()}


def run(*, quick: bool = False, threads: tuple[int, ...] | None = None) -> dict:
    """Time every method, one fresh process per thread setting (default: 1 and 2; quick: 1)."""
    size = {**(QUICK if quick else FULL), "shape": cnn_input_shape()}
    if threads is None:
        threads = (1,) if quick else (1, 2)
    settings = []
    for count in threads:
        load_before = [round(value, 2) for value in os.getloadavg()]
        result = run_in_child(
            "benchmarks.attribution:time_methods",
            n_inputs=size["n_inputs"],
            shape=list(size["shape"]),
            threads=count,
        )
        for timings in result["models"].values():
            for kind in ("seconds", "cpu_seconds"):
                timings[f"total_{kind}"] = {
                    target: sum(times[target] for times in timings[kind].values())
                    for target in TARGETS
                }
        result["load_average"] = {
            "before": load_before,
            "after": [round(value, 2) for value in os.getloadavg()],
        }
        settings.append(result)
    return {**size, "settings": settings}


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section for :func:`run`'s result."""
    n = result["n_inputs"]
    shape = " x ".join(str(size) for size in result["shape"])
    first = result["settings"][0]["models"]
    full, ours = first["full-resolution"], first["MapCNN3D"]
    lines = [
        "## Attribution maps: every method for a cohort's held-out subjects",
        "",
        f"{n} volumes of 1 x {shape}: the bounding box of the MNI brain mask on the "
        f"{VOXEL_SIZE:g} mm grid, the CNN's input shape at that voxel size (the analysis mask "
        "is the MNI mask intersected with the subjects' masks, so a real cohort's box can be a "
        "few voxels smaller); random weights, evaluation mode; "
        "`rsxai.explain.attribution.attribute` at its defaults (SmoothGrad 16 samples, Integrated "
        "Gradients 16 steps, batch size 8), for the predicted class and for the patient class; "
        "one fresh process per torch thread setting; each time is one call on all volumes, "
        "after a warm-up call.",
        "",
        f"- full-resolution CNN: 3 blocks (3x3x3 conv at {shape}, batch norm, ReLU, 2x2x2 "
        f"max pool; 8, 16, 32 channels; {full['n_parameters']:,} parameters), global average "
        f"pooling, linear; Grad-CAM layer `{full['layer']}` ({_shape(full)} feature maps).",
        "- MapCNN3D: rsxai's default classifier (`build_model('cnn3d')`: stride-2 stem, 3 "
        f"blocks, linear head on the flattened maps; {ours['n_parameters']:,} parameters); "
        f"Grad-CAM layer `{ours['layer']}` ({_shape(ours)} feature maps).",
        "- Grad-CAM layer: `rsxai.explain.gradcam.default_target_layer` for this input shape (the "
        "deepest layer with at least 10 voxels per axis); its maps are upsampled to the input.",
        "- CPU time is the process's, all threads together. Load averages (1, 5, 15 min) are "
        "taken before and after each process (after includes it); on a busy machine "
        "wall-clock times are pessimistic.",
        f"- Target: all methods for 60 volumes in <= {BUDGET_SECONDS:.0f} s on 2 cores.",
        "",
    ]
    for setting in result["settings"]:
        lines += _setting_table(setting)
    return "\n".join(lines)


def _shape(model: dict) -> str:
    return " x ".join(str(size) for size in model["layer_shape"])


def _setting_table(setting: dict) -> list[str]:
    models = setting["models"]
    load = setting["load_average"]
    lines = [
        f"Torch threads: {setting['threads']}; peak memory {setting['peak_rss_mb']:.0f} MiB; "
        f"load average before {load['before']}, after {load['after']}.",
        "",
        "| method | passes per volume | full-resolution: predicted / patient (s) "
        "| MapCNN3D: predicted / patient (s) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for method, passes in PASSES.items():
        cells = [
            " / ".join(f"{models[name]['seconds'][method][target]:.1f}" for target in TARGETS)
            for name in MODELS
        ]
        lines.append(f"| {method} | {passes} | {cells[0]} | {cells[1]} |")
    totals, cpu = (
        [" / ".join(f"{models[name][kind][target]:.1f}" for target in TARGETS) for name in MODELS]
        for kind in ("total_seconds", "total_cpu_seconds")
    )
    lines += [
        f"| **all five, wall-clock** | {sum(PASSES.values())} | **{totals[0]}** "
        f"| **{totals[1]}** |",
        f"| all five, CPU time | | {cpu[0]} | {cpu[1]} |",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__, quick_help="4 volumes (smoke run)")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=None,
        help="torch thread settings, one process each (default: 1 2; quick: 1)",
    )
    args = parser.parse_args(argv)
    threads = None if args.threads is None else tuple(args.threads)
    print(markdown(run(quick=args.quick, threads=threads)))


if __name__ == "__main__":
    main()
