"""CNN training speed at 4 mm against the machine's arithmetic limit, and one 10-fold CV.

Data: synthetic subject maps on the real 4 mm MNI brain mask
(``rsxai.grid.mni_brain_mask(4)``, 36 x 45 x 39 bounding box): a smooth
"network" blob plus spatially smooth noise (Gaussian, sigma one voxel), with
the maps of one group lowered by ``EFFECT`` within-subject standard
deviations in a sphere of radius 3 voxels (12 mm, about 80 voxels); 30 + 30
subjects. The classifier is :class:`rsxai.cnn.classifier.CNNClassifier` with
its defaults (3 blocks, width 8, at most 40 epochs, patience 10, 20 % of the
training subjects held out for early stopping).

Measured, each in a fresh process per thread setting
(:func:`benchmarks.measurement.run_in_child`; ``OMP_NUM_THREADS`` set in the
child, which torch follows):

- matrix-multiply rate: ``torch.matmul`` of two 2048 x 2048 float32 matrices,
  best of 5 (2 * 2048**3 FLOPs each) — the arithmetic limit;
- training FLOPs per volume: forward and backward multiply-adds (x2) of the
  convolutions and the linear layer, from their shapes
  (:func:`rsxai.cnn.cost.flops_per_volume` with ``training=True``);
- throughput: volumes through forward + backward + AdamW step per second,
  54 training volumes (one fold of 10-fold CV on 60), 10 epochs without
  validation, best of ``repeats`` runs; achieved GFLOP/s = throughput x
  FLOPs per volume, and its fraction of the matrix-multiply rate;
- one fold: wall-clock time of ``CNNClassifier().fit`` on 54 subjects (early
  stopping on 11 of them), best of ``repeats``;
- 10-fold stratified CV on the 60 subjects: total time and accuracy, beside an
  L2 logistic regression on the same volumes (scikit-learn defaults) for scale.

Other work on the machine slows every figure; times are best-of to lessen that.

Run alone: ``python -m benchmarks.cnn_training [--quick]``.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.measurement import benchmark_parser, run_in_child, timed

EFFECT = 2.0
N_SUBJECTS = 60
N_FOLDS = 10
FULL = {"repeats": 3, "matrix_size": 2048, "cv": True, "throughput_epochs": 10}
QUICK = {"repeats": 1, "matrix_size": 1024, "cv": False, "throughput_epochs": 2}


def synthetic_maps(mask: np.ndarray, n_subjects: int = N_SUBJECTS, effect: float = EFFECT, seed=0):
    """Masked maps (n_subjects, n_voxels) and labels (half 0, half 1) with a planted effect."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n_subjects // 2)
    grid = np.indices(mask.shape).transpose(1, 2, 3, 0)
    network = np.exp(-((grid - np.array([23, 25, 30])) ** 2).sum(-1) / (2 * 4.0**2))
    sphere = (((grid - np.array([15, 30, 30])) ** 2).sum(-1) <= 3**2).astype(float)
    sphere = ndimage.gaussian_filter(sphere, 1.0)
    sphere /= sphere.max()
    maps = np.empty((n_subjects, int(mask.sum())))
    for subject in range(n_subjects):
        noise = ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.0)
        noise /= noise[mask].std()
        maps[subject] = (2 * network + noise - effect * y[subject] * sphere)[mask]
    return maps, y


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Best float32 ``torch.matmul`` rate of two size x size matrices, in GFLOP/s."""
    import torch

    generator = torch.Generator().manual_seed(0)
    a = torch.randn((size, size), generator=generator)
    b = torch.randn((size, size), generator=generator)
    torch.matmul(a, b)  # warm-up
    best = min(timed(lambda: torch.matmul(a, b))[1] for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def measure(
    repeats: int = 3, matrix_size: int = 2048, cv: bool = True, throughput_epochs: int = 10
) -> dict:
    """Child process: every figure for the current thread setting (see the module docstring)."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    from rsxai.cnn import CNNClassifier, count_parameters, flops_per_volume, maps_to_volumes
    from rsxai.grid import mni_brain_mask

    mask = np.asarray(mni_brain_mask(4))
    X, y = synthetic_maps(mask)
    folds = list(StratifiedKFold(N_FOLDS, shuffle=True, random_state=0).split(X, y))
    train, _ = folds[0]
    gflops = matmul_gflops(matrix_size)

    throughput = []
    for repeat in range(repeats):
        clf = CNNClassifier(
            mask,
            max_epochs=throughput_epochs,
            validation_fraction=0.0,
            random_state=repeat,
            device="cpu",
        ).fit(X[train], y[train])
        throughput.append(clf.history_.volumes_per_second)
    model = clf.model_
    in_shape = clf.in_shape_
    training_flops = flops_per_volume(model, in_shape, training=True)

    fold_seconds, fold_epochs = [], []
    for _ in range(repeats):
        clf, seconds = timed(lambda: CNNClassifier(mask, device="cpu").fit(X[train], y[train]))
        fold_seconds.append(seconds)
        fold_epochs.append(clf.history_.n_epochs)

    result = {
        "threads": torch.get_num_threads(),
        "in_shape": list(in_shape),
        "n_voxels": int(mask.sum()),
        "n_train": len(train),
        "n_parameters": count_parameters(model),
        "forward_mflops": flops_per_volume(model, in_shape) / 1e6,
        "training_mflops": training_flops / 1e6,
        "matmul_gflops": gflops,
        "volumes_per_second": max(throughput),
        "achieved_gflops": max(throughput) * training_flops / 1e9,
        "fold_seconds": min(fold_seconds),
        "fold_epochs": fold_epochs[int(np.argmin(fold_seconds))],
        "repeats": repeats,
    }
    result["fraction_of_matmul"] = result["achieved_gflops"] / gflops
    if cv:
        correct, linear_correct, epochs = 0, 0, []
        start = time.perf_counter()
        for train, test in folds:
            clf = CNNClassifier(mask, device="cpu").fit(X[train], y[train])
            correct += int((clf.predict(X[test]) == y[test]).sum())
            epochs.append(clf.history_.n_epochs)
        result["cv_seconds"] = time.perf_counter() - start
        result["cv_accuracy"] = correct / len(y)
        result["cv_mean_epochs"] = float(np.mean(epochs))
        volumes = maps_to_volumes(X, mask).reshape(len(y), -1)
        for train, test in folds:
            linear = LogisticRegression(max_iter=5000).fit(volumes[train], y[train])
            linear_correct += int((linear.predict(volumes[test]) == y[test]).sum())
        result["cv_linear_accuracy"] = linear_correct / len(y)
    return result


def run(*, quick: bool = False, threads: tuple[int | None, ...] | None = None) -> dict:
    """:func:`measure` in a fresh process per thread setting (default: 1, then all cores)."""
    settings = QUICK if quick else FULL
    if threads is None:
        threads = (1,) if quick else (1, None)
    return {
        "effect": EFFECT,
        "n_subjects": N_SUBJECTS,
        "n_folds": N_FOLDS,
        "matrix_size": settings["matrix_size"],
        "throughput_epochs": settings["throughput_epochs"],
        "settings": [
            {
                "threads_setting": n,
                **run_in_child("benchmarks.cnn_training:measure", blas_threads=n, **settings),
            }
            for n in threads
        ],
    }


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section for :func:`run`'s result."""
    first = result["settings"][0]
    shape = " x ".join(map(str, first["in_shape"]))
    lines = [
        "## CNN training: throughput against the arithmetic limit, one fold, 10-fold CV",
        "",
        f"Synthetic maps on the 4 mm MNI brain mask ({first['n_voxels']:,} voxels; CNN input "
        f"{shape}, the mask's bounding box); {result['n_subjects']} subjects, half with a "
        f"planted decrease of {result['effect']:g} SD in a 12 mm sphere. `CNNClassifier` "
        f"defaults: {first['n_parameters']:,} weights, {first['forward_mflops']:.0f} MFLOP "
        f"forward and {first['training_mflops']:.0f} MFLOP forward + backward per volume "
        "(convolutions and linear layer, multiply-adds x 2).",
        "",
        f"- Throughput: forward + backward + AdamW step on {first['n_train']} volumes, "
        f"{result['throughput_epochs']} epochs, best of {first['repeats']}. Arithmetic limit: "
        f"float32 `torch.matmul` of two {result['matrix_size']}^2 matrices, best of 5.",
        f"- One fold: `CNNClassifier().fit` on {first['n_train']} subjects (early stopping on "
        "20 % of them), best of "
        f"{first['repeats']}. 10-fold CV: stratified, all {result['n_subjects']} subjects, "
        "beside an L2 logistic regression on the same volumes.",
        "- Threads: `1` sets OMP_NUM_THREADS=1; `default` leaves torch's default (all cores).",
        "",
        "| threads | matmul GFLOP/s | volumes/s | achieved GFLOP/s | of matmul | one fold (s) "
        "| epochs | 10-fold CV (s) | CV accuracy | logistic regression |",
        "| :---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for item in result["settings"]:
        label = "default" if item["threads_setting"] is None else str(item["threads_setting"])
        cv = (
            f"{item['cv_seconds']:.0f} | {item['cv_accuracy']:.2f} | "
            f"{item['cv_linear_accuracy']:.2f}"
            if "cv_seconds" in item
            else "- | - | -"
        )
        lines.append(
            f"| {label} ({item['threads']}) | {item['matmul_gflops']:.0f} | "
            f"{item['volumes_per_second']:.0f} | {item['achieved_gflops']:.1f} | "
            f"{100 * item['fraction_of_matmul']:.0f} % | {item['fold_seconds']:.1f} | "
            f"{item['fold_epochs']} | {cv} |"
        )
    lines += [
        "",
        "Target: 10-fold CV of one network in <= 2 min on 2 cores (one fold <= ~10 s). "
        "When other processes share the cores, torch's OpenMP threads wait on each other at "
        "every operation (GNU OpenMP spins before it sleeps), and the `default` row can be "
        "many times slower than the `1` row: train with one thread per process "
        "(`CNNClassifier(n_threads=1)`, folds in parallel processes) or set "
        "OMP_WAIT_POLICY=PASSIVE on such machines.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__, quick_help="smoke run (no CV, 1 repeat)")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=None,
        help="thread settings to run (0: torch's default); default: 1 0 (quick: 1)",
    )
    args = parser.parse_args(argv)
    threads = None if args.threads is None else tuple(t or None for t in args.threads)
    print(markdown(run(quick=args.quick, threads=threads)))


if __name__ == "__main__":
    main()
