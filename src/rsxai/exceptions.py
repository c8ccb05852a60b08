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
    which. rsxai's own class, so that these expected warnings can be filtered
    without hiding scikit-learn's ``ConvergenceWarning`` from the classifiers.
    """
