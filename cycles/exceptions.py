"""The errors of the cycles package: a leaf module that imports nothing else of ours.

As scikit-learn's ``exceptions.py``: the pure package owns its errors, and `engine` translates
them into the application's family once, where it calls cycles (`engine.errors.cycles_errors`).
"""

__all__ = ["CyclesError", "InputError", "NotFittedError", "ParamsError"]


class CyclesError(ValueError):
    """Base class of the errors cycles raises."""


class InputError(CyclesError):
    """A frame or argument the models cannot work with (missing columns, too little history)."""


class NotFittedError(CyclesError, AttributeError):
    """An estimator was used before `fit`."""


class ParamsError(CyclesError):
    """A parameter out of its range (`cycles.params`): `field`, `wanted` and `value` say which."""

    def __init__(self, field: str, wanted: str, value: object):
        self.field, self.wanted, self.value = field, wanted, value
        super().__init__(f"{field} must be {wanted}, got {value!r}")

    def __reduce__(self):  # noqa: ANN204 - picklable (worker processes) despite the three arguments
        return type(self), (self.field, self.wanted, self.value)
