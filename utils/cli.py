"""One way for every command-line entry point to report errors: :func:`run_main`.

    if __name__ == '__main__':
        run_main(main)

The project's errors (:class:`utils.errors.ReportedError` and its subclasses: config, registry, data,
checkpoint and argument errors) and the operating system's file errors become one line
``error: <message>`` on stderr, with exit status 2 for mistakes in the user's input and 1 for failures
that are not (see ``utils/errors.py``). ``--debug`` anywhere on the command line (removed before
``main`` parses it) or ``MMPOSE_CLEAN_DEBUG=1`` in the environment shows the full traceback instead.
Any other exception is a bug and keeps its traceback.

With several processes (torchrun, srun), an error every rank raises alike (a mistake in the command
line or the config, or one marked so: :func:`utils.dist.raised_alike_on_every_rank`,
:func:`run_on_rank_0`) is printed by the first process of each machine only; any other error is left for
the other ranks in the process group's store (:func:`utils.dist.announce_stop`), and an error that only
follows another rank's stop (a broken collective) is reported as that rank's message. Under torchrun,
every failing rank also writes its line to torchrun's error file (``TORCHELASTIC_ERROR_FILE``), so
torchrun's failure summary names it as the root cause.
"""
from __future__ import annotations

import errno
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from utils.dist import (
    announce_stop,
    broadcast_object,
    get_rank,
    get_world_size,
    is_distributed,
    launch_ranks,
    leaving,
    mark_same_on_every_rank,
    peer_stopped,
    raised_alike_on_every_rank,
)
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


def report_error(message: str, *, quiet: bool = False, details: str | None = None) -> None:
    """Print ``error: message`` on stderr unless ``quiet``; under torchrun, also record it (or ``details``,
    e.g. a traceback) in this process's error file, in the format of torch's ``ErrorHandler``, which
    torchrun's failure summary shows for the rank that failed first."""
    if not quiet:
        print(f'error: {message}', file=sys.stderr, flush=True)
    path = os.environ.get('TORCHELASTIC_ERROR_FILE')
    if path:
        record = {'message': {'message': f'error: {message}', 'extraInfo': {
            'py_callstack': details or f'error: {message}', 'timestamp': str(int(time.time()))}}}
        try:
            with open(path, 'w', encoding='utf-8') as file:
                json.dump(record, file)
        except OSError:
            pass


T = TypeVar('T')


def run_on_rank_0(check: Callable[[], T]) -> T:
    """``check()`` run by rank 0 alone (e.g. checking and creating the work dir, which only rank 0
    writes), its result given to every rank. When it raises, every rank raises an error with the same
    message and exit status (rank 0 its own), marked as raised alike on every rank: all ranks stop, and
    the line is printed once (:func:`run_main`). Without a process group it is just ``check()``."""
    if not is_distributed() or get_world_size() == 1:
        return check()
    result = failure = own = None
    if get_rank() == 0:
        try:
            result = check()
        except Exception as error:  # noqa: BLE001 - shared with every rank, then raised
            own, failure = error, describe(error) or (f'{type(error).__name__}: {error} (rank 0)', 1)
    result, failure = broadcast_object((result, failure))
    if failure is None:
        return result
    if own is None:
        own = ReportedError(failure[0])
        own.exit_code = failure[1]
    raise mark_same_on_every_rank(own)


def run_main(main: Callable[[list[str]], Any], argv: list[str] | None = None) -> NoReturn:
    """Run ``main(argv)`` (default ``sys.argv[1:]`` without ``--debug``) and exit the process.

    Exit status: ``main``'s int result (0 for any other result), the error's status (see the module
    docstring), or 130 after Ctrl-C. ``SystemExit`` (argparse's usage errors) passes through. With
    several ranks, see the module docstring for which rank prints what.
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
        stopped = peer_stopped() if describe(error) is None else None
        if stopped is not None:  # only a broken collective: another rank stopped first
            if debug:
                raise stopped from error
            error = stopped
        reported = None if debug else describe(error)
        message = reported[0] if reported else f'{type(error).__name__}: {error}'
        quiet = raised_alike_on_every_rank(error) and launch_ranks()[1] != 0
        report_error(message, quiet=quiet or reported is None,
                     details=None if reported else traceback.format_exc())
        if not leaving():
            announce_stop(message)  # the other ranks stop with it
        if reported is None:
            raise
        sys.exit(reported[1])
    sys.exit(result if isinstance(result, int) and not isinstance(result, bool) else 0)
