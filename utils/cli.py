"""One way for every command-line entry point to report errors: :func:`run_main`.

    if __name__ == '__main__':
        run_main(main)

The project's errors (:class:`utils.errors.ReportedError` and its subclasses: config, registry, data,
checkpoint and argument errors) and the operating system's file errors become one line
``error: <message>`` on stderr, with exit status 2 for mistakes in the user's input and 1 for failures
that are not (see ``utils/errors.py``). ``--debug`` anywhere on the command line (removed before
``main`` parses it) or ``MMPOSE_CLEAN_DEBUG=1`` in the environment shows the full traceback instead.
Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from utils.errors import ReportedError

DEBUG_FLAG = '--debug'
DEBUG_ENV = 'MMPOSE_CLEAN_DEBUG'
# OS errors about the paths the user named; others (a full disk, an I/O error) are exit status 1
_USER_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.EEXIST,
                errno.EROFS, errno.ENAMETOOLONG, errno.ENOTEMPTY}


def debug_requested(argv: list[str]) -> bool:
    """Whether ``argv`` holds ``--debug`` or the environment sets ``MMPOSE_CLEAN_DEBUG`` to a true value."""
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, '').strip().lower() not in ('', '0', 'false', 'no')


def _unwrap_worker_error(message: str, kind: type) -> str:
    """The original message of an error a DataLoader worker raised, which torch re-raises in the main
    process as ``kind('Caught <kind> in DataLoader worker process N.', the traceback, '<module>.<kind>:
    <message>')`` (lines)."""
    marker = f'\n{kind.__module__}.{kind.__qualname__}: '
    if not message.startswith(f'Caught {kind.__name__} in DataLoader worker') or marker not in message:
        return message
    return message[message.rindex(marker) + len(marker):].strip()


def describe(error: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit status) for an error reported without a traceback, else None."""
    if isinstance(error, ReportedError):
        return _unwrap_worker_error(str(error), type(error)), error.exit_code
    if isinstance(error, OSError):
        if error.filename is not None and error.strerror:
            message = f'{error.filename}: {error.strerror}'
        else:
            message = str(error)
        return message, 2 if error.errno in _USER_ERRNOS or error.errno is None else 1
    return None


def run_main(main: Callable[[list[str]], Any], argv: list[str] | None = None) -> NoReturn:
    """Run ``main(argv)`` (default ``sys.argv[1:]`` without ``--debug``) and exit the process.

    Exit status: ``main``'s int result (0 for any other result), the error's status (see the module
    docstring), or 130 after Ctrl-C. ``SystemExit`` (argparse's usage errors) passes through.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != DEBUG_FLAG]
    try:
        result = main(argv)
    except KeyboardInterrupt:
        print('error: interrupted', file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - re-raised below unless it is a reported error
        reported = None if debug else describe(error)
        if reported is None:
            raise
        message, status = reported
        print(f'error: {message}', file=sys.stderr)
        sys.exit(status)
    sys.exit(result if isinstance(result, int) and not isinstance(result, bool) else 0)
