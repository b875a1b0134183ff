"""The errors of the printing package: a leaf module that imports nothing else of ours.

As `cycles.exceptions`: printing owns its errors, and `engine` translates them into the
application's family once, where it calls printing (`engine.errors.printing_errors`).
"""

__all__ = ["PrintingError", "FontError"]


class PrintingError(ValueError):
    """Base class of the errors printing raises."""


class FontError(PrintingError):
    """A font file that is missing or that reportlab cannot read (the message names the file)."""
