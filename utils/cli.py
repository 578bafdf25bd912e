"""One way for every command-line entry point to report errors: :func:`run_main`; and the argument
parser, argument types and shared flags every script's command line is built from.

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

Command lines use :class:`ArgumentParser` (a usage mistake is one ``error: argument --flag: ...`` line,
exit status 2) and the argument types below, which check a value before any work starts: numbers in
their range (:func:`positive_int`, :func:`non_negative_int`, :func:`random_seed`,
:func:`unit_float`, :func:`non_negative_float`), devices that exist here (:func:`device_name`), files to
read (:func:`input_file`) and outputs (:func:`output_file` with the extensions a tool writes,
:func:`output_dir`). Output flags follow one convention (:func:`add_out_argument`): ``--out`` for a file,
``--out-dir`` for a folder, older spellings kept as aliases. The config file (:func:`add_config_argument`:
positional, or ``--cfg_file``) and ``--cfg-options`` (:func:`add_cfg_options_argument`) are what
``utils.config.load_config`` takes; ``--threads`` (:func:`add_threads_argument`) follows ``utils.threads``.
"""
from __future__ import annotations

import argparse
import errno
import json
import math
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
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


# ------------------------------------------------------------------------------------- command lines
class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` (description kept as written) whose usage errors (a missing or unknown
    argument, a value its type refuses) are one line ``error: argument --flag: ...`` on stderr with exit
    status 2, as :func:`run_main` reports every other mistake: under torchrun or srun printed by each
    machine's first process only (every rank parses the same command line) and written to torchrun's
    error file."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault('formatter_class', argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        hint = '' if message.startswith('argument ') else f' (see {self.prog} --help)'  # a value says why
        report_error(f'{message}{hint}', quiet=launch_ranks()[1] != 0)
        sys.exit(2)


def _bounded(kind: type, low: float | None, high: float | None, expected: str) -> Callable[[str], Any]:
    noun = 'a whole number' if kind is int else 'a number'

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not {noun}; expected {expected}') from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f'{text!r} is not a finite number; expected {expected}')
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f'{text} is out of range; expected {expected}')
        return value

    parse.__name__ = expected
    return parse


positive_int = _bounded(int, 1, None, 'a whole number >= 1')
"""argparse type: a whole number >= 1 (batch sizes, iterations, counts, threads)."""
non_negative_int = _bounded(int, 0, None, 'a whole number >= 0')
"""argparse type: a whole number >= 0 (loader workers, warm-up runs, radii)."""
SEED_MAX = 2**32 - 1
random_seed = _bounded(int, 0, SEED_MAX, f'a whole number from 0 to {SEED_MAX} (2**32 - 1)')
"""argparse type: a random seed, 0 .. 2**32 - 1: every generator a run seeds takes it (numpy's legacy
``np.random.seed`` refuses larger and negative values; torch and ``random`` take these too)."""
unit_float = _bounded(float, 0.0, 1.0, 'a number from 0 to 1')
"""argparse type: a threshold, probability or opacity in [0, 1]."""
non_negative_float = _bounded(float, 0.0, None, 'a number >= 0')
"""argparse type: a finite number >= 0 (tolerances)."""


def _cuda_unavailable() -> str:
    """Why torch finds no CUDA device here, for the error message."""
    import torch

    if torch.version.cuda is None and getattr(torch.version, 'hip', None) is None:
        return f'this torch ({torch.__version__}) was built without CUDA'
    visible = os.environ.get('CUDA_VISIBLE_DEVICES')
    if visible is not None:
        seen = f'no GPU visible with CUDA_VISIBLE_DEVICES={visible!r}'
    elif sys.platform.startswith('linux') and not os.path.exists('/proc/driver/nvidia/version'):
        seen = 'no NVIDIA driver is loaded'
    else:
        seen = 'no GPU is visible'
    return f'torch {torch.__version__} (CUDA {torch.version.cuda}) finds no GPU: {seen}'


def device_name(text: str) -> str:
    """argparse type: a device this machine has, ``cpu``, ``cuda``, ``cuda:N`` (or ``mps`` on Apple
    GPUs). A CUDA device that is not there names what was found (a torch built without CUDA, no driver
    or no GPU visible, fewer GPUs) and how to choose the CPU; another string lists the valid forms."""
    import torch

    name = text.strip().lower()
    match = re.fullmatch(r'(cpu|cuda|mps)(?::(\d+))?', name)
    mps = bool(getattr(torch.backends, 'mps', None) and torch.backends.mps.is_available())
    if match is None or (match.group(1) != 'cuda' and match.group(2) is not None):
        forms = 'cpu, cuda, cuda:N (N: a GPU index, e.g. cuda:0)' + (' or mps' if mps else '')
        raise argparse.ArgumentTypeError(f'{text!r} is not a device; expected {forms}')
    kind, index = match.group(1), match.group(2)
    if kind == 'mps' and not mps:
        raise argparse.ArgumentTypeError(f'{text!r}: the Apple GPU (MPS) is not available here; use '
                                         '--device cpu')
    if kind == 'cuda':
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f'{text!r}: CUDA is not available: {_cuda_unavailable()}; use '
                                             '--device cpu')
        if index is not None and int(index) >= count:
            gpus = f'only {count} GPU is' if count == 1 else f'only {count} GPUs are'
            raise argparse.ArgumentTypeError(f'{text!r}: {gpus} visible (cuda:0 to cuda:{count - 1}); choose '
                                             'one of them, or --device cpu')
    return name


def add_device_argument(parser: Any, default: str | None = None) -> None:
    """Add ``--device`` (:func:`device_name`); without ``default`` the script picks CUDA when available."""
    parser.add_argument('--device', type=device_name, default=default, metavar='DEVICE',
                        help=f'cpu, cuda or cuda:N (default: {default or "cuda when available, else cpu"})')


def input_file(what: str) -> Callable[[str], str]:
    """argparse type: an existing file to read; a missing path or a folder is refused, naming ``what``
    was expected (e.g. ``'a COCO annotation .json file'``)."""
    def parse(text: str) -> str:
        if os.path.isdir(text):
            raise argparse.ArgumentTypeError(f'{text} is a folder; expected {what}')
        if not os.path.exists(text):
            raise argparse.ArgumentTypeError(f'{text} not found; expected {what}')
        return text

    parse.__name__ = what
    return parse


def output_file(*suffixes: str) -> Callable[[str], str]:
    """argparse type: a file to write, with one of ``suffixes`` (case-insensitive; any when none given);
    an existing folder, or another extension, is refused by name. Nothing is created here."""
    def parse(text: str) -> str:
        kinds = '/'.join(suffixes) + ' ' if suffixes else ''
        if os.path.isdir(text):
            raise argparse.ArgumentTypeError(f'{text} is a folder; expected a {kinds}file name to write')
        suffix = Path(text).suffix.lower()
        if suffixes and suffix not in suffixes:
            raise argparse.ArgumentTypeError(f'{text}: unsupported extension {suffix or "(none)"!r}; '
                                             f'expected {", ".join(suffixes)}')
        return text

    parse.__name__ = 'output file'
    return parse


def output_dir(text: str) -> str:
    """argparse type: a folder to write into (created when the first file is written); an existing file
    is refused."""
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f'{text} is a file; expected a folder (created if missing)')
    return text


def add_config_argument(parser: Any, required: bool = True, dest: str = 'config',
                        help: str = 'config file (Python, with _base_ inheritance)') -> None:
    """Add the config file argument every entry point takes: positional first (MMPose's habit), or
    ``--cfg_file CONFIG`` / ``--cfg-file CONFIG`` (the original project's spelling), not both.

    The value lands in ``args.<dest>`` (None when ``required`` is False and neither form is given).
    """
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(dest, nargs='?', default=argparse.SUPPRESS, metavar='CONFIG', help=help)
    group.add_argument('--cfg_file', '--cfg-file', dest=dest, metavar='CONFIG',
                       help='the config file given as an option (alias of the positional CONFIG)')


def add_cfg_options_argument(parser: Any) -> None:
    """Add the shared ``--cfg-options KEY=VALUE ...`` flag to an argparse parser; given more than once,
    the lists add up (as in MMPose)."""
    parser.add_argument(
        '--cfg-options', nargs='+', action='extend', default=None, metavar='KEY=VALUE',
        help='override config entries, e.g. train_dataloader.batch_size=32 '
             'optim_wrapper.optimizer.lr=1e-3 (values are Python literals of the type the entry takes; an '
             'unknown key is an error, +KEY=VALUE adds a new one; a top-level variable such as codec or '
             'data_root also changes the entries built from it)')


def add_out_argument(parser: Any, kind: Callable[[str], str], help: str, aliases: Sequence[str] = (),
                     positional: str | None = None, required: bool = True, folder: bool = False,
                     metavar: str | None = None) -> None:
    """Add a tool's output as ``--out FILE`` (``folder``: ``--out-dir DIR``) into ``args.out`` /
    ``args.out_dir``, checked by ``kind``. ``aliases`` are the older flag spellings that keep working;
    ``positional`` (a metavar) also accepts it as a positional argument, as MMPose's tools do (one of
    the two forms when ``required``)."""
    flag, dest = ('--out-dir', 'out_dir') if folder else ('--out', 'out')
    metavar = metavar or ('DIR' if folder else 'FILE')
    if positional is None:
        parser.add_argument(flag, *aliases, dest=dest, type=kind, required=required, metavar=metavar,
                            help=help)
        return

    def positional_kind(text: str) -> str:  # argparse runs the type on the SUPPRESS default when left out
        return text if text == argparse.SUPPRESS else kind(text)

    positional_kind.__name__ = getattr(kind, '__name__', 'output')
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(dest, nargs='?', type=positional_kind, default=argparse.SUPPRESS, metavar=positional,
                       help=help)
    group.add_argument(flag, *aliases, dest=dest, type=kind, metavar=metavar,
                       help=f'the same, as an option (alias of the positional {positional})')


def add_threads_argument(parser: Any) -> None:
    """Add ``--threads N`` (``args.threads``, None when left out); see ``utils.threads.set_threads``."""
    parser.add_argument('--threads', type=positive_int, default=None, metavar='N',
                        help='CPU compute threads (torch, OpenCV, ONNX Runtime); default: OMP_NUM_THREADS '
                             'if set, else the free cores (usable cores minus the load average, at least 1)')
