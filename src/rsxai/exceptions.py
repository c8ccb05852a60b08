"""Exceptions rsxai raises on purpose."""

from __future__ import annotations

from collections.abc import Iterable


class InputError(ValueError):
    """The user's input cannot be used.

    Every problem found is kept, one line each, naming the file or option,
    the problem and the fix, so that all of them can be reported at once.

    Parameters
    ----------
    problems : str or iterable of str
        One message per problem.
    """

    def __init__(self, problems: str | Iterable[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class ICAConvergenceWarning(UserWarning):
    """FastICA did not converge in some restarts of :class:`rsxai.decomposition.GroupICA`.

    Expected when some components are noise; their ICASSO stability tells
    which. rsxai's own class rather than scikit-learn's ``ConvergenceWarning``
    so that group ICA does not import scikit-learn (about 85 MiB of libraries
    a group ICA alone does not need).
    """


class NotFittedError(ValueError, AttributeError):
    """A model's result was asked for before ``fit``.

    The same bases as scikit-learn's ``NotFittedError``, so ``except
    ValueError`` and ``except AttributeError`` catch both; rsxai's own for
    the models that do not import scikit-learn (:class:`rsxai.decomposition.GroupICA`).
    """
