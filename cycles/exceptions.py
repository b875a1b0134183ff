"""The errors of the cycles package: a leaf module that imports nothing else of ours.

As scikit-learn's ``exceptions.py``: the pure package owns its errors, and `engine` translates
them into the application's family once, where it calls cycles (`engine.errors.cycles_errors`).
"""

__all__ = ["CyclesError", "InputError", "NotFittedError"]


class CyclesError(ValueError):
    """Base class of the errors cycles raises."""


class InputError(CyclesError):
    """A frame or argument the models cannot work with (missing columns, too little history)."""


class NotFittedError(CyclesError, AttributeError):
    """An estimator was used before `fit`."""
