"""The project's error classes that command-line entry points report as one line (see ``utils.cli``).

Every user-facing error derives from :class:`ReportedError`; ``exit_code`` is the process exit status
``utils.cli.run_main`` uses for it. :class:`UserError` (status 2) is a mistake in what the user gave: an
argument, a config, a data, image, annotation or checkpoint file. Other :class:`ReportedError` subclasses
(status 1) are failures that are not the user's input (a failed export check, a missing optional
package, a download that broke, a non-finite loss). Each concrete class also derives from the built-in
exception that code catching it may expect (``ValueError``, ``KeyError``, ``OSError``, ...).

Problems a run can sensibly go on with are reported by :func:`warn`.
"""
from __future__ import annotations

import logging
import sys

from utils.logger import LOGGER_NAME


class ReportedError(Exception):
    """A failure reported as ``error: <message>`` without a traceback; exit status 1."""

    exit_code = 1


class UserError(ReportedError):
    """A mistake in the user's input (arguments, config, data or checkpoint files); exit status 2."""

    exit_code = 2


class ArgumentError(UserError, ValueError):
    """Command-line arguments that cannot work together, or an output that would destroy an input."""


class DataError(UserError, ValueError):
    """A dataset, annotation, prediction or image file that cannot be used; names the file and entry."""


class SettingsError(UserError, ValueError):
    """Training or evaluation settings that cannot work; the message names the config key."""


class MissingDependencyError(ReportedError, ImportError):
    """An optional package a feature needs is not installed; the message says how to install it."""


def warn(message: str) -> None:
    """Log ``message`` as a warning on the project logger (the console and train.log); before a script has
    set the logger up, print it to stderr as ``warning: <message>``."""
    logger = logging.getLogger(LOGGER_NAME)
    if logger.hasHandlers():
        logger.warning(message)
    else:
        print(f'warning: {message}', file=sys.stderr)
