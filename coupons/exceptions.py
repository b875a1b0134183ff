"""The errors of the coupons package: a leaf module that imports nothing else of ours.

As `cycles.exceptions`: the pure package owns its errors, and `engine` translates them into the
application's family once, where it calls coupons (`engine.config.validate_settings` for the
rules).
"""

__all__ = ["CouponsError", "RulesError"]


class CouponsError(ValueError):
    """Base class of the errors coupons raises."""


class RulesError(CouponsError):
    """A rule out of its range (`coupons.rules`): `field`, `wanted` and `value` say which."""

    def __init__(self, field: str, wanted: str, value: object):
        self.field, self.wanted, self.value = field, wanted, value
        super().__init__(f"{field} must be {wanted}, got {value!r}")

    def __reduce__(self):  # noqa: ANN204 - picklable (worker processes) despite the three arguments
        return type(self), (self.field, self.wanted, self.value)
