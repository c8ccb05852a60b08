"""The network ensemble of a cross-validation: mean patient probability over networks.

Each network's model labels a subject by its own ``predict`` (for the linear
baselines decision value > 0); the ensemble has only the networks'
probabilities to combine, so its rule is on those: :data:`ENSEMBLE_RULE`.
No permutation test is run for the ensemble (the classify stage tests each
network's models only), so its metrics carry no permutation p.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["ENSEMBLE_RULE", "ENSEMBLE_THRESHOLD", "ensemble_predictions"]

#: The ensemble predicts the patient class at a mean patient probability of at least this.
ENSEMBLE_THRESHOLD = 0.5
#: How the ensemble's ``y_pred`` is made, as written to its metrics.
ENSEMBLE_RULE = (
    f"patient when the mean patient probability over networks is >= {ENSEMBLE_THRESHOLD} "
    "(for the SVM, of the networks' Platt probabilities)"
)


def ensemble_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """Mean patient probability over networks, per model, subject and repeat.

    The ensemble's label is patient where that mean is >= 0.5
    (:data:`ENSEMBLE_RULE`). For the SVM the probabilities are Platt-scaled,
    so a subject whose networks all say control (decision value <= 0) may
    still be an ensemble patient, and the other way round.

    Parameters
    ----------
    predictions : DataFrame
        Columns as in :attr:`rsxai.classify.CrossValidation.predictions`.

    Returns
    -------
    DataFrame
        Same columns, ``network == "ensemble"``; empty when there is only one network.
    """
    if predictions.empty or predictions["network"].nunique() < 2:
        return predictions.iloc[:0]
    keys = ["subject", "model", "repeat", "fold", "y_true"]
    ensemble = predictions.groupby(keys, sort=False, as_index=False)["probability"].mean()
    ensemble["network"] = "ensemble"
    ensemble["y_pred"] = (ensemble["probability"] >= ENSEMBLE_THRESHOLD).astype(int)
    return ensemble[predictions.columns]
