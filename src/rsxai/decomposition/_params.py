"""scikit-learn's parameter API for estimators that do not import scikit-learn.

``sklearn.base.BaseEstimator`` gives ``get_params``, ``set_params`` and a
readable ``repr`` from the constructor's signature, but importing it loads
all of scikit-learn (with pandas and scipy.stats: about 85 MiB). An
estimator used on its own, such as :class:`rsxai.decomposition.group_ica.GroupICA`, inherits the
same API from :class:`ConstructorParams` instead, so that
``sklearn.base.clone`` still works on it when scikit-learn is there.
"""

from __future__ import annotations

import inspect

from rsxai.exceptions import InputError

__all__ = ["ConstructorParams"]


class ConstructorParams:
    """``get_params`` / ``set_params`` / ``repr`` from the constructor's keyword parameters.

    As in scikit-learn, ``__init__`` must store each parameter unchanged
    under its own name.
    """

    @classmethod
    def _parameter_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [name for name in signature.parameters if name != "self"]

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's parameters and their values.

        Parameters
        ----------
        deep : bool, default=True
            Ignored: no parameter is an estimator.

        Returns
        -------
        dict
        """
        return {name: getattr(self, name) for name in self._parameter_names()}

    def set_params(self, **params) -> ConstructorParams:
        """Set constructor parameters; they are checked when the estimator is fitted.

        Returns
        -------
        self
        """
        names = self._parameter_names()
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise InputError(
                f"{type(self).__name__} has no parameter(s) {', '.join(map(repr, unknown))}; "
                f"valid parameters: {', '.join(names)}."
            )
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = inspect.signature(type(self).__init__).parameters
        changed = []
        for name, value in self.get_params().items():
            default = defaults[name].default
            unchanged = default is value or (
                type(default) is type(value) and bool(default == value)
            )
            if not unchanged:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"
