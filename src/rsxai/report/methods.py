"""The methods section: a boilerplate paragraph per stage, written from the run's own settings.

Every number in the text comes from the output folder (``rsxai.toml``,
``provenance.json``, ``summary.json``, the metric files), so the paragraph a
user pastes into a paper describes the run that produced the results. Each
paragraph cites the methods it names; the references follow the text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np
import pandas as pd

from rsxai.report.html import details, escape, format_number, guarded, paragraph, table
from rsxai.report.methods_learning import classification_methods, explanation_methods
from rsxai.report.references import Citations

if TYPE_CHECKING:
    from rsxai.report.folder import ReportFolder

MOTION_TEXT = {
    "none": "no motion parameters",
    "6": "the 6 rigid-body motion parameters",
    "12": "the 6 rigid-body motion parameters and their temporal derivatives",
    "24": "24 motion regressors (the 6 rigid-body parameters, their temporal derivatives and "
    "the squares of all 12)",
}


def _software(folder: ReportFolder, cite: Citations) -> str:
    provenance = folder.provenance
    versions: dict[str, Any] = provenance.get("versions", {})
    if not versions:
        return paragraph(
            "Software versions are unknown: <code>provenance.json</code> is not in this folder."
        )
    study = cite("shimano2025")
    names = {"scikit-learn": f"scikit-learn{cite('pedregosa2011')}"}
    names["nilearn"] = f"nilearn{cite('abraham2014')}"
    names["torch"] = f"PyTorch{cite('paszke2019')}"
    listed = ", ".join(
        f"{names.get(package, escape(package))} {escape(version)}"
        for package, version in versions.items()
        if package not in ("rsxai", "python") and version
    )
    seed = provenance.get("random_seed", folder.option("run", "random_seed"))
    return paragraph(
        f"Analyses were run with rsxai {escape(versions.get('rsxai', '?'))}, which follows the "
        f"pipeline of Shimano et al.{study}, on Python "
        f"{escape(versions.get('python', '?'))} with {listed}. Every random choice was drawn "
        f"from seed {escape(seed)}; the full configuration is in <code>rsxai.toml</code> and "
        "the versions, input checksums and timings in <code>provenance.json</code>."
    )


def _sample(folder: ReportFolder) -> str:
    subjects = folder.summary.get("subjects")
    if not subjects:
        return ""
    groups = ", ".join(f"{escape(g)} {n}" for g, n in subjects.get("groups", {}).items())
    excluded = subjects.get("excluded", [])
    task = folder.option("input", "task", "rest")
    space = folder.option("input", "space", "MNI152NLin2009cAsym")
    text = (
        f"The sample comprised {subjects.get('n')} participants ({groups}); "
        f"“{escape(subjects.get('positive_label'))}” was the positive (patient) class. "
    )
    fsl = _fsl_source(folder)
    if fsl:
        text += (
            "Inputs were the subject maps of a finished FSL dual_regression run "
            f"(<code>{escape(fsl['folder'])}</code>, {fsl['n_components']} maps per "
            "participant); preprocessing, group ICA and dual regression were done outside "
            "rsxai and are not described here."
        )
    else:
        text += (
            f"Inputs were the preprocessed task-{escape(task)} BOLD series in {escape(space)} "
            "space; of several runs per participant, "
            + (
                "all were concatenated."
                if folder.option("input", "multi_run") == "concatenate"
                else "the first was used."
            )
        )
    if excluded:
        text += f" {len(excluded)} participant(s) were excluded (see Sample)."
    return paragraph(text)


def _fsl_source(folder: ReportFolder) -> dict | None:
    """The FSL dual_regression folder the subject maps came from, if any."""
    source = folder.summary.get("network_maps_source") or {}
    return source if source.get("kind") == "FSL dual_regression" else None


def _preprocessing(folder: ReportFolder, cite: Citations) -> str:
    options = folder.config.get("preprocess")
    if not options or _fsl_source(folder):
        return ""
    motion = str(options.get("motion", "24"))
    regressors = [MOTION_TEXT.get(motion, f"{motion} motion regressors")]
    if motion in ("12", "24"):
        regressors[0] += cite("friston1996")
    if options.get("wm_csf"):
        regressors.append("the mean white-matter and CSF signals")
    if options.get("global_signal"):
        regressors.append("the global signal")
    high, low = options.get("high_pass") or 0, options.get("low_pass") or 0
    if high and low:
        band = f"band-pass filtered ({high}-{low} Hz, zero-phase Butterworth)"
    elif high or low:
        band = (
            f"{'high' if high else 'low'}-pass filtered ({high or low} Hz, zero-phase Butterworth)"
        )
    else:
        band = "not filtered in time"
    # Outputs made before [dual_regression] variance_normalise existed held z-scored series.
    older = folder.option("dual_regression", "variance_normalise") is None
    text = (
        f"Each participant's series was cleaned run by run: regression of "
        f"{'; '.join(regressors)}, polynomial detrending (order "
        f"{options.get('detrend_order', 1)}), {band}, with filters and confound regression "
        f"kept orthogonal{cite('lindquist2019')}, then "
        + (
            "z-scored in time."
            if older
            else "scaled by one factor per run to a median intensity of 10,000 (FEAT's "
            "grand-mean scaling), each voxel keeping its amplitude."
        )
    )
    if options.get("scrub_fd") is not None:
        text += (
            f" Volumes with framewise displacement above {options['scrub_fd']} mm were "
            f"censored{cite('power2012')}."
        )
    fwhm = options.get("smoothing_fwhm") or 0
    text += (
        f" Series were {'smoothed (FWHM ' + str(fwhm) + ' mm) and ' if fwhm else 'not smoothed, '}"
        f"resampled onto a {options.get('voxel_size')} mm isotropic MNI grid; the analysis "
        f"mask kept voxels inside {format_number(100 * options.get('mask_fraction', 1.0))} % of "
        "the participants' brain masks and inside the MNI152 brain mask"
    )
    mask = folder.path("mask")
    if mask.exists():
        n_voxels = int(np.count_nonzero(np.asarray(nib.load(mask).dataobj)))
        text += f" ({format_number(n_voxels)} voxels)"
    return paragraph(text + ".")


def _ica(folder: ReportFolder, cite: Citations) -> str:
    ica, networks = folder.config.get("ica"), folder.config.get("networks", {})
    if not ica or "networks" not in folder.summary:
        return ""
    fsl = _fsl_source(folder)
    if fsl:
        text = (
            f"The group maps of the FSL run were {escape(fsl['group_maps'])}"
            if not ica.get("group_maps")
            else f"The group maps of the FSL run were <code>{escape(ica['group_maps'])}</code>"
        ) + "."
    elif ica.get("group_maps"):
        text = (
            f"Group maps were not estimated: the maps of <code>{escape(ica['group_maps'])}</code> "
            "were imported."
        )
    else:
        k = ica.get("n_components")
        # What the run recorded; older outputs lack it (their MIGP default was 2T - 1).
        fitted = folder.summary.get("group_ica", {})
        dimension = (
            f"a dimension estimated by Laplace PPCA{cite('minka2000')}"
            + (f" ({fitted['n_components']} components)" if "n_components" in fitted else "")
            if k == "auto"
            else f"{k} components"
        )
        migp = ica.get("migp_dim") or fitted.get("migp_dim")
        text = (
            "Group spatial ICA followed MELODIC's recipe"
            f"{cite('beckmann2004')}: participants' data were reduced by MIGP group "
            f"PCA{cite('smith2014')} (internal dimension "
            f"{escape(migp) if migp else 'twice the number of volumes minus one'}), then "
            f"unmixed into {dimension} by symmetric FastICA{cite('hyvarinen1999')}, restarted "
            f"{ica.get('n_restarts')} times from random starts; the most typical run was kept and "
            f"each component's stability is the ICASSO index Iq{cite('himberg2004')}. Maps were "
            "sign-fixed to positive skew and z-scored across voxels."
        )
    template = networks.get("templates") or (
        f"built-in templates derived from the Seitzman et al. regions{cite('seitzman2020')}"
    )
    wanted = ", ".join(escape(n) for n in networks.get("networks", []))
    text += (
        f" Components were matched to reference networks ({wanted}) by spatial correlation with "
        f"{escape(template)}, one component per network (optimal assignment), requiring "
        f"r ≥ {networks.get('min_r')}"
    )
    forced = networks.get("force_component") or []
    text += f"; chosen by hand: {escape(', '.join(forced))}" if forced else ""
    if forced and folder.option("classify", "cv_scope") == "fold":
        text += (
            " (components of the all-subject ICA; in each cross-validation fold, the fold's "
            "component that correlated best with that map)"
        )
    text += "."
    if fsl:
        return paragraph(
            text + " Each participant's map of the chosen components was taken from FSL's "
            f"stage-2 output{cite('beckmann2009', 'nickerson2017')}."
        )
    des_norm = folder.option("dual_regression", "des_norm", True)
    variance_normalise = folder.option("dual_regression", "variance_normalise")
    if variance_normalise is None:  # outputs made before the option existed
        data = "on the z-scored series"
    elif variance_normalise:
        data = (
            "on the series z-scored voxel by voxel, so that the maps do not carry each voxel's "
            "amplitude"
        )
    else:
        data = (
            "as FSL's dual_regression, on the cleaned series not variance-normalised (group "
            "ICA alone normalised each voxel's variance), so that the maps carry each voxel's "
            "amplitude"
        )
    text += (
        f" Dual regression{cite('beckmann2009', 'nickerson2017')}, {data}, gave each "
        "participant a map per network: stage 1 regressed the group maps on each volume, stage 2 "
        "regressed the resulting time courses"
        + (", variance-normalised," if des_norm else " (not variance-normalised)")
        + " on each voxel's series; the stage-2 parameter estimates are the subject maps."
    )
    return paragraph(text)


def _stats(folder: ReportFolder, cite: Citations) -> str:
    stats = folder.summary.get("stats")
    options = folder.config.get("stats", {})
    if not stats:
        return ""
    covariates = stats.get("covariates") or []
    n_perm = {
        entry["n_permutations"]
        for network in stats.get("networks", {}).values()
        for entry in network.values()
    }
    perms = ", ".join(format_number(n) for n in sorted(n_perm)) or escape(
        options.get("n_permutations")
    )
    tfce = stats.get("tfce") or {}
    text = (
        "Group differences in each network's subject maps were tested voxel-wise with a general "
        "linear model (intercept, group"
        + (f", covariates {escape(', '.join(covariates))}" if covariates else "")
        + f") and {perms} permutations{cite('winkler2014')} (the unpermuted labelling counted "
        "as one"
        + (
            ", Freedman-Lane permutation of the reduced model's residuals"
            if covariates
            else ", permuting the group labels"
        )
        + (
            f", within exchangeability blocks given by {escape(options['exchangeability_blocks'])}"
            if options.get("exchangeability_blocks")
            else ""
        )
        + f"). Contrasts: {escape(', '.join(options.get('contrasts', [])))}. "
    )
    if options.get("tfce", True):
        # Older outputs lack summary.json's record: rsxai.toml, else the defaults of then.
        h = tfce.get("H", options.get("tfce_h", 2.0))
        e = tfce.get("E", options.get("tfce_e", 0.5))
        connectivity = tfce.get("connectivity", options.get("tfce_connectivity", 6))
        recorded = ""
        if not tfce:
            where = "rsxai.toml" if "tfce_h" in options else "rsxai defaults"
            recorded = f" ({where}; not recorded in summary.json)"
        text += (
            f"Statistics were enhanced by TFCE{cite('smith2009')} with H = {h}, E = {e} and "
            f"{connectivity}-connectivity{recorded}"
            + (
                ", in height steps of 1/100 of the unpermuted t map's maximum (of t for a "
                "one-sided contrast, of |t| for the two-sided one or where no t is above 0), "
                "fixed for all permutations"
                if "dh" in tfce
                else ""
            )
            + ". "
        )
    family = stats.get("fwe_contrasts")
    if family is None:  # summary.json of an rsxai before the correction over contrasts
        text += (
            "Family-wise error was controlled by the distribution of the maximum statistic over "
            f"voxels within each map; with {stats.get('n_tests')} tests (networks × contrasts), "
            "Bonferroni-corrected minima are also reported."
        )
    else:
        text += (
            f"Family-wise error was controlled over the voxels and the {len(family)} contrasts "
            "of each network by the distribution of the maximum statistic over them, under the "
            "same permutations for every contrast (as randomise --corrcon"
            + ("; TFCE maps compared as height step × TFCE" if options.get("tfce", True) else "")
            + "), so a voxel significant at p_FWE &lt; 0.05 in any contrast holds that level for "
            "the network"
            if len(family) > 1
            else "Family-wise error was controlled by the distribution of the maximum statistic "
            "over voxels"
        ) + (
            f"; minima Bonferroni-corrected over the {stats.get('n_networks')} network(s) are "
            "also reported."
        )
    return paragraph(text)


def _configuration_table(folder: ReportFolder) -> str:
    rows = [
        {"section": section, "option": name, "value": str(value)}
        for section, options in folder.config.items()
        for name, value in options.items()
    ]
    if not rows:
        return ""
    return details(
        "Every option of the run (rsxai.toml)", table(pd.DataFrame(rows), formats={"value": str})
    )


def methods_section(folder: ReportFolder) -> str:
    """Methods text generated from the run, its settings table, and the references."""
    cite = Citations()
    parts = [
        guarded("Software", lambda: _software(folder, cite)),
        guarded("Sample", lambda: _sample(folder)),
        guarded("Preprocessing", lambda: _preprocessing(folder, cite)),
        guarded("Group ICA", lambda: _ica(folder, cite)),
        guarded("Statistics", lambda: _stats(folder, cite)),
        guarded("Classification", lambda: classification_methods(folder, cite)),
        guarded("Explanations", lambda: explanation_methods(folder, cite)),
        guarded("Configuration", lambda: _configuration_table(folder)),
    ]
    return "".join(parts) + cite.html()
