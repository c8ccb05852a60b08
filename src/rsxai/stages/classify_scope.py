"""What the classification outputs claim: the scope of the features and what the headline is.

Every metric of the classify stage (and of ``rsxai classify``) is written
with the cross-validation scope of its features, said in words
(:data:`SCOPE_DESCRIPTIONS`) and as ``transductive`` (:data:`SCOPE_TRANSDUCTIVE`:
True, False, or None where rsxai cannot know), and with what its headline
number and its permutation p are of (:func:`headline_description`,
:data:`PERMUTATION_OF`). :func:`reported_scope` decides the scope of a run
from its inputs, not only from the ``cv_scope`` option: maps made outside
rsxai are used as given in every fold, whatever was asked for. Apart from
:mod:`rsxai.stages.classify`, which computes and writes, because these are
the words every output, the report and the methods text must agree on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rsxai.stages.context import RunContext

logger = logging.getLogger(__name__)

#: The scope of maps made outside rsxai: an FSL folder, a user's stack, imported group maps.
EXTERNAL_SCOPE = "external maps"

SCOPE_DESCRIPTIONS = {
    "fold": (
        "fold: group ICA, network labelling and dual regression refitted on the training "
        "subjects of each fold; held-out subjects dual-regressed onto the training maps. "
        "Label-free and shared by every fold: the common brain mask, and with it the CNN's "
        "crop box, is built from every subject's brain mask, held-out subjects included (no "
        "labels; as FSL's dual_regression builds its mask). Training subjects are "
        "dual-regressed onto group maps they shaped, held-out subjects onto maps they did not "
        "shape: a pessimistic shift (held-out maps fit the training maps less well than the "
        "maps the classifier learnt from), so accuracies may be slightly pessimistic"
    ),
    "cohort": (
        "cohort (TRANSDUCTIVE): group ICA and network labelling fitted once on all subjects, "
        "held-out subjects included, as in the original study; accuracies may be optimistic. "
        "Compared with the fold scope on the same data, where training subjects are "
        "dual-regressed onto maps they shaped and held-out subjects are not (a pessimistic "
        "shift), here every subject is projected on maps it shaped: the difference between the "
        "two scopes mixes this optimism with that shift, and is not a measure of the leak alone"
    ),
    EXTERNAL_SCOPE: (
        "external maps (POSSIBLY TRANSDUCTIVE): the group maps were made outside rsxai, "
        "imported with --group-maps (e.g. MELODIC's melodic_IC) or behind an FSL "
        "dual_regression folder or a stack of subject maps, and used as given in every fold, "
        "not refitted on the training subjects; rsxai cannot know whether they were estimated "
        "with the test subjects included (a group ICA of the whole cohort makes this the cohort "
        "scope, and accuracies may be optimistic)"
    ),
}

#: Whether each scope lets held-out subjects shape the features (None: cannot be known).
SCOPE_TRANSDUCTIVE = {"fold": False, "cohort": True, EXTERNAL_SCOPE: None}

#: What the permutation p of a metrics file is of (written with it).
PERMUTATION_OF = (
    "the headline accuracy and balanced accuracy: those of the first cross-validation "
    "repeat, its partition kept and every fold refitted under each permutation"
)


def headline_description(n_repeats: int) -> str:
    """What the headline metrics of a cross-validation of ``n_repeats`` repeats are.

    The first repeat, with its intervals, binomial p and permutation p: the
    permutation tests score one repeat's partition, so this is the number
    that has a valid p at the cost of one cross-validation per permutation.
    The spread over repeats is reported beside it, as a stability figure.
    """
    if n_repeats > 1:
        return (
            f"first repeat: every metric, its interval, binomial p and permutation p are of the "
            f"first of the {n_repeats} cross-validation repeats (one out-of-fold prediction per "
            f"subject); 'repeats' gives the mean, SD, min and max over all {n_repeats} repeats, "
            "a stability figure without interval or p"
        )
    return (
        "first repeat: every metric, its interval, binomial p and permutation p are of the "
        "cross-validation's out-of-fold predictions (one per subject; a single repeat)"
    )


def reported_scope(context: RunContext) -> str:
    """The scope a run's metrics are reported under; warns once where fold was asked for.

    Maps made outside rsxai (an FSL dual_regression folder, or group maps
    imported with ``--group-maps``) are the same in every fold, so no fold
    scope can be claimed for them: they are :data:`EXTERNAL_SCOPE`, possibly
    transductive (a MELODIC run on all subjects is the study's protocol).
    """
    asked = context.config.classify.cv_scope
    if context.fsl is not None:
        if asked == "fold":
            logger.warning(
                "classify: cv_scope = fold needs the rs-fMRI series; with an FSL "
                "dual_regression folder as input the maps are used as given (scope: %s).",
                EXTERNAL_SCOPE,
            )
        return EXTERNAL_SCOPE
    group_maps = context.config.ica.group_maps
    if group_maps is not None:
        if asked == "fold":
            logger.warning(
                "classify: the group maps %s (ica.group_maps) are used as given in every fold, "
                "not refitted on its training subjects; the scope is reported as '%s', possibly "
                "transductive: if they were estimated on all subjects (e.g. MELODIC on the "
                "whole cohort), this is the cohort scope and accuracies may be optimistic.",
                group_maps,
                EXTERNAL_SCOPE,
            )
        return EXTERNAL_SCOPE
    return asked
