"""The one family of errors listwise raises; the CLI turns each into one stderr line.

The pure packages own their errors (`cycles.exceptions`, `coupons.exceptions`,
`printing.exceptions`); `cycles_errors` and `printing_errors` turn them into this family once,
where engine calls them (as httpx's ``map_exceptions``); `engine.config.validate_settings` turns a
parameter out of range (`cycles.params`, `coupons.rules`) into a `ConfigError` naming the settings key.
"""

import contextlib

import cycles.exceptions as _cycles

__all__ = [
    "EngineError",
    "InputError",
    "ConfigError",
    "NotFittedError",
    "CodeError",
    "StateError",
    "NothingToDo",
    "cycles_errors",
    "printing_errors",
]


class EngineError(Exception):
    """Base class for every error we raise."""


class InputError(EngineError):
    """Malformed input data: the message names file, row, column and the bad value."""


class ConfigError(EngineError):
    """A bad setting in listwise.toml or the environment."""


class NotFittedError(EngineError):
    """An estimator was used before `fit`."""


class CodeError(EngineError):
    """A list code that is malformed or fails its keyed check."""


class StateError(EngineError):
    """The database is not in the state the command needs (not initialised, no batch, ...)."""


class NothingToDo(EngineError):
    """The command has nothing to do (e.g. the current period's batch is done); not a failure."""


@contextlib.contextmanager
def cycles_errors():
    """Translate the cycles package's errors into ours (usable as a decorator too)."""
    try:
        yield
    except _cycles.NotFittedError as exc:
        raise NotFittedError(str(exc)) from exc
    except _cycles.ParamsError as exc:
        raise ConfigError(str(exc)) from exc
    except _cycles.CyclesError as exc:
        raise InputError(str(exc)) from exc


@contextlib.contextmanager
def printing_errors():
    """Translate the printing package's errors into ours (usable as a decorator too).

    A font printing cannot read is a setting or installation problem: `ConfigError`. The
    import is here, not at the top, so that engine's modules that never print (the checkout
    service) do not load reportlab.
    """
    from printing.exceptions import PrintingError

    try:
        yield
    except PrintingError as exc:
        raise ConfigError(str(exc)) from exc
