"""Options of the learning stages: classification and explanations."""

from __future__ import annotations

from rsxai.config.option import Option

LEARNING_OPTIONS: tuple[Option, ...] = (
    # [classify] cross-validated classification of each network's maps
    Option(
        "classify",
        "models",
        ["cnn", "svm", "logistic", "screened"],
        "Classifiers, each cross-validated on every network in the same folds (screened: "
        "smoothing, t-test screening in the training fold, logistic regression).",
        "--models",
        choices=("cnn", "svm", "logistic", "screened"),
    ),
    Option(
        "classify",
        "cv_scope",
        "fold",
        "fold: group ICA, labelling and dual regression refit on each training fold "
        "(leak-free); cohort: fitted once on everyone (the study's protocol, transductive). "
        "With ica.group_maps or an FSL folder the maps are used as given in every fold: "
        "reported as 'external maps', possibly transductive.",
        "--cv-scope",
        choices=("fold", "cohort"),
    ),
    Option(
        "classify",
        "cv_scheme",
        "kfold",
        "Outer cross-validation: stratified k-fold or leave-one-out.",
        "--cv-scheme",
        choices=("kfold", "loo"),
    ),
    Option("classify", "cv_folds", 10, "Folds of the k-fold scheme.", "--cv-folds", minimum=2),
    Option(
        "classify",
        "cv_repeats",
        1,
        "Repeats of the k-fold scheme, each with another shuffle; the metrics and p are "
        "those of the first repeat, the spread over repeats is reported beside them.",
        "--cv-repeats",
        minimum=1,
    ),
    Option(
        "classify",
        "fold_ica_restarts",
        1,
        "FastICA restarts of the group ICA refit in each fold (fold scope).",
        "--fold-ica-restarts",
        minimum=1,
    ),
    Option(
        "classify",
        "baseline_permutations",
        1000,
        "Label permutations of the whole cross-validation for the linear baselines.",
        "--baseline-permutations",
        minimum=0,
    ),
    Option(
        "classify",
        "cnn_permutations",
        0,
        "Label permutations of the whole CNN cross-validation (each retrains every fold).",
        "--cnn-permutations",
        minimum=0,
    ),
    Option(
        "classify",
        "screened_permutations",
        200,
        "Label permutations of the whole cross-validation for the screened baseline (each "
        "refits every fold, the screening included).",
        "--screened-permutations",
        minimum=0,
    ),
    Option(
        "classify",
        "screened_fwhm",
        8.0,
        "Screened baseline: Gaussian smoothing FWHM in mm within the mask (0: none).",
        "--screened-fwhm",
        minimum=0,
    ),
    Option(
        "classify",
        "screened_voxels",
        50,
        "Screened baseline: voxels of largest and of smallest training-fold t, each set "
        "averaged into one feature.",
        "--screened-voxels",
        minimum=1,
    ),
    Option(
        "classify", "cnn_blocks", 3, "Convolution blocks of the CNN.", "--cnn-blocks", minimum=1
    ),
    Option(
        "classify", "cnn_width", 8, "Channels of the first CNN block.", "--cnn-width", minimum=1
    ),
    Option(
        "classify", "cnn_dropout", 0.3, "Dropout before the CNN head.", "--cnn-dropout", minimum=0
    ),
    Option("classify", "cnn_epochs", 40, "Maximum training epochs.", "--cnn-epochs", minimum=1),
    Option(
        "classify",
        "cnn_patience",
        10,
        "Epochs without validation improvement before early stopping.",
        "--cnn-patience",
        minimum=1,
    ),
    Option(
        "classify",
        "cnn_start_from_epoch",
        10,
        "Warm-up epochs that early stopping may not restore (their noisy validation loss "
        "otherwise picked near-untrained weights in about 1 fit in 6).",
        "--cnn-start-from-epoch",
        minimum=0,
    ),
    Option("classify", "cnn_batch_size", 8, "Training batch size.", "--cnn-batch-size", minimum=1),
    Option(
        "classify",
        "cnn_learning_rate",
        1e-3,
        "AdamW learning rate.",
        "--cnn-learning-rate",
        minimum=0,
    ),
    Option(
        "classify",
        "cnn_weight_decay",
        1e-2,
        "AdamW weight decay.",
        "--cnn-weight-decay",
        minimum=0,
    ),
    Option(
        "classify",
        "cnn_shift_voxels",
        2,
        "Training augmentation: random shifts up to this many voxels per axis (no flips).",
        "--cnn-shift-voxels",
        minimum=0,
    ),
    Option(
        "classify",
        "cnn_noise_sd",
        0.1,
        "Training augmentation: Gaussian noise SD (maps are z-scored within the mask).",
        "--cnn-noise-sd",
        minimum=0,
    ),
    # [explain] attribution maps of the held-out subjects and their checks
    Option(
        "explain",
        "methods",
        ["saliency", "smoothgrad", "integrated_gradients", "gradcam", "gradcam++"],
        "Attribution methods, each run for every held-out subject with its fold's CNN.",
        "--explain-methods",
        choices=("saliency", "smoothgrad", "integrated_gradients", "gradcam", "gradcam++"),
    ),
    Option(
        "explain",
        "targets",
        ["predicted", "patient"],
        "Classes explained: each subject's predicted class, and the patient class.",
        "--explain-targets",
        choices=("predicted", "patient"),
    ),
    Option(
        "explain",
        "smoothgrad_samples",
        16,
        "SmoothGrad: noisy copies of each input.",
        "--smoothgrad-samples",
        minimum=1,
    ),
    Option(
        "explain",
        "smoothgrad_noise",
        0.15,
        "SmoothGrad: noise SD as a fraction of each input's range in the brain mask, the "
        "noise added inside the mask only (Smilkov et al.: 0.1-0.2).",
        "--smoothgrad-noise",
        minimum=0,
    ),
    Option(
        "explain",
        "ig_steps",
        16,
        "Integrated Gradients: quadrature points (Gauss-Legendre) along the path.",
        "--ig-steps",
        minimum=1,
    ),
    Option(
        "explain",
        "target_layer",
        None,
        "Grad-CAM and Grad-CAM++ layer (dotted module name, e.g. blocks.1.act); not set: "
        "the deepest layer with at least 10 voxels per axis.",
        "--target-layer",
        nullable=True,
        kind=str,
    ),
    Option(
        "explain",
        "top_fraction",
        0.05,
        "Share of voxels, most relevant first, compared with the FWE-significant ones (Dice).",
        "--top-fraction",
        minimum=0,
    ),
    Option(
        "explain",
        "sanity_checks",
        True,
        "Run the randomisation sanity checks (cascading weights, shuffled labels; one fold).",
        "--sanity-checks",
    ),
    Option(
        "explain",
        "n_sanity_subjects",
        4,
        "Held-out subjects of the first fold explained again in the sanity checks.",
        "--n-sanity-subjects",
        minimum=1,
    ),
    Option(
        "explain",
        "faithfulness_steps",
        10,
        "Points of the deletion and insertion curves after the start.",
        "--faithfulness-steps",
        minimum=1,
    ),
    Option(
        "explain",
        "n_faithfulness_subjects",
        12,
        "Held-out subjects (drawn at random, seeded) of the deletion and insertion curves; "
        "0 skips them.",
        "--n-faithfulness-subjects",
        minimum=0,
    ),
)
