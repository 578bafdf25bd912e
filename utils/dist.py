"""Distributed helpers: joining the process group (torchrun's environment, or SLURM's under ``srun``),
rank queries, collectives, and telling every rank why the run stops.

Stopping: a rank that fails leaves ``rank R: <message>`` in the process group's key-value store (the
first message stays) and marks itself as leaving (:func:`announce_stop`); the other ranks read it, from a
watcher thread or once their collective broke (:func:`peer_stop_message`), acknowledge it and stop with it.
With a plain launch (``srun``, or the variables set by hand) the store lives in rank 0's process and dies
with it, so rank 0 waits, at most :data:`ACK_TIMEOUT` seconds, until every other rank has left or
acknowledged its message before it exits; a store that can no longer be reached means that its host has
gone. Under torchrun the store lives in the launcher.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from utils.config_dict import ConfigError
from utils.errors import ArgumentError, MissingDependencyError, ReportedError, SettingsError
from utils.registry import RegistryError

DEFAULT_TIMEOUT = 600.0  # seconds a rank waits in a collective (or for the others to join) before failing
DEFAULT_MASTER_PORT = '29500'  # under srun without MASTER_PORT, as MMPose's slurm launcher
ACK_TIMEOUT = 5.0  # seconds rank 0 waits for the others to read its stop message
STOP_KEY = 'mmpose_clean/stop'
STORE_GONE = ('rank 0 stopped: the process group store it hosts is gone (under torchrun: the launcher '
              'stopped); its output says why')
_LEFT_KEY = 'mmpose_clean/left/'
_E = TypeVar('_E', bound=BaseException)


def is_distributed() -> bool:
    """True when a torch.distributed process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def launch_ranks(environ: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """(rank, local rank, world size) this process was launched as: torchrun's RANK, LOCAL_RANK and
    WORLD_SIZE, else SLURM's SLURM_PROCID, SLURM_LOCALID and SLURM_NTASKS (one ``srun`` task per process),
    else (0, 0, 1). Read from the environment, so it also holds before the process group is joined."""
    env = os.environ if environ is None else environ
    if 'WORLD_SIZE' in env:
        return int(env.get('RANK', '0')), int(env.get('LOCAL_RANK', '0')), int(env['WORLD_SIZE'])
    if 'SLURM_PROCID' in env and int(env.get('SLURM_NTASKS', '1')) > 1:
        return int(env['SLURM_PROCID']), int(env.get('SLURM_LOCALID', '0')), int(env['SLURM_NTASKS'])
    return 0, 0, 1


def first_slurm_host(nodelist: str) -> str:
    """The first host of a SLURM node list (``SLURM_NODELIST``): ``scontrol show hostnames`` when it is
    installed, else parsed here, e.g. ``'gpu[07-09,12],cpu1'`` -> ``'gpu07'``,
    ``'rack[1-2]-n[3,5]'`` -> ``'rack1-n3'``."""
    if shutil.which('scontrol'):
        try:
            result = subprocess.run(['scontrol', 'show', 'hostnames', nodelist], capture_output=True,
                                    text=True, timeout=30)
            if result.returncode == 0 and result.stdout.split():
                return result.stdout.split()[0]
        except (OSError, subprocess.SubprocessError):
            pass
    depth, end = 0, len(nodelist)
    for i, char in enumerate(nodelist):  # the first entry ends at a comma outside brackets
        depth += {'[': 1, ']': -1}.get(char, 0)
        if char == ',' and depth == 0:
            end = i
            break
    return re.sub(r'\[([^\]]*)\]', lambda m: re.split(r'[,-]', m.group(1))[0], nodelist[:end].strip())


def slurm_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) for a process that
    ``srun`` started, from SLURM's, as MMPose's slurm launcher derives them: the first host of
    SLURM_NODELIST is the master unless MASTER_ADDR is set, MASTER_PORT defaults to 29500. Empty when
    torchrun's variables are there already or SLURM launched a single task."""
    if 'WORLD_SIZE' in environ:
        return {}
    rank, local_rank, world_size = launch_ranks(environ)
    if world_size == 1:
        return {}
    nodelist = environ.get('SLURM_STEP_NODELIST') or environ.get('SLURM_NODELIST') or '127.0.0.1'
    return {'RANK': str(rank), 'LOCAL_RANK': str(local_rank), 'WORLD_SIZE': str(world_size),
            'MASTER_ADDR': environ.get('MASTER_ADDR') or first_slurm_host(nodelist),
            'MASTER_PORT': environ.get('MASTER_PORT') or DEFAULT_MASTER_PORT}


def process_group_settings(env_cfg: Mapping[str, Any] | None) -> tuple[str | None, float]:
    """(backend or None for the device's default, timeout in seconds) from the config's ``env_cfg``:
    ``dist_backend`` and ``dist_timeout`` (MMPose's ``dist_cfg=dict(backend=..., timeout=...)`` too)."""
    env_cfg = env_cfg or {}
    mm = env_cfg.get('dist_cfg') or {}
    backend = env_cfg.get('dist_backend') or mm.get('backend')
    key = 'env_cfg.dist_timeout' if 'dist_timeout' in env_cfg else 'env_cfg.dist_cfg.timeout'
    timeout = env_cfg.get('dist_timeout', mm.get('timeout', DEFAULT_TIMEOUT))
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise SettingsError(f'{key} = {timeout!r}: expected the seconds a rank waits for the others in a '
                            f'collective, a number above 0 (default {DEFAULT_TIMEOUT:g})')
    return backend, float(timeout)


_run: dict[str, Any] = {}  # the joined group's store (kept alive to the end), rank and world size


def init_distributed(device: str | None = None, backend: str | None = None,
                     timeout: float = DEFAULT_TIMEOUT) -> tuple[int, int, torch.device]:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT) or, without it, by SLURM's (:func:`slurm_environment`), if any.

    Args:
        device: 'cuda' or 'cpu'; None picks 'cuda' when available, else 'cpu'.
        backend: default 'nccl' on CUDA and 'gloo' on CPU.
        timeout: seconds a collective (and joining) waits for the other ranks before it fails.

    Returns:
        (rank, world_size, device); device is ``cuda:LOCAL_RANK`` on CUDA (under srun: modulo the GPUs
        the task sees). A plain ``python train.py`` gets (0, 1, device) and no process group.
    """
    from_slurm = slurm_environment(os.environ)
    os.environ.update(from_slurm)
    rank, local_rank, world_size = launch_ranks()
    dev = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if dev.type == 'cuda':  # cuda:N in one process; the rank's GPU under torchrun / srun
        if world_size == 1 and dev.index is not None:
            index = dev.index
        else:  # under srun a task may see only its own GPU(s), as in MMPose's launcher
            index = local_rank % max(torch.cuda.device_count(), 1) if from_slurm else local_rank
        dev = torch.device('cuda', index)
        torch.cuda.set_device(dev)
    if world_size > 1 and not is_distributed():
        backend = backend or ('nccl' if dev.type == 'cuda' else 'gloo')
        if dev.type == 'cpu' and backend == 'nccl':
            backend = 'gloo'
        try:
            dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout),
                                    device_id=dev if dev.type == 'cuda' else None)
        except dist.DistError as err:
            where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
            raise ReportedError(
                f'rank {rank} of {world_size} could not join the process group at {where} within '
                f'{timeout:g} s (env_cfg.dist_timeout): are all {world_size} processes started (one per '
                f'srun task or torchrun process) and is the address reachable? '
                f'({str(err).splitlines()[0]})') from err
        _run.update(store=dist.distributed_c10d._get_default_store(), rank=dist.get_rank(),
                    world_size=dist.get_world_size())
    return get_rank(), get_world_size(), dev


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (any picklable object)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy ``module``'s buffers (e.g. BatchNorm running statistics, which every rank updates from
    its own batches) from rank ``src`` to all ranks, in place."""
    if is_distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=src)


def cleanup() -> None:
    """Leave the process group, if any (its store stays reachable for the stop messages)."""
    if is_distributed():
        dist.destroy_process_group()


# ------------------------------------------------------------------ stopping every rank with one message
class RunStopped(ReportedError, RuntimeError):
    """Training cannot go on (e.g. out of memory on some rank); the message says why and, with several
    ranks, which rank stopped first."""


# errors that depend only on the command line, the config and the installed packages: wherever they are
# raised, every rank raises them alike
_ALIKE_ON_EVERY_RANK = (ArgumentError, ConfigError, RegistryError, SettingsError, MissingDependencyError)


def raised_alike_on_every_rank(error: BaseException) -> bool:
    """Whether every rank raises ``error`` alike: marked so (:func:`mark_same_on_every_rank`,
    :func:`same_on_every_rank`), or a mistake in the command line, the config or the installed packages."""
    return bool(getattr(error, 'same_on_every_rank', False)) or isinstance(error, _ALIKE_ON_EVERY_RANK)


def mark_same_on_every_rank(error: _E) -> _E:
    """Mark ``error`` as raised alike by every rank (it depends only on what every rank reads: the command
    line, the config, an outcome rank 0 shared), so that ``utils.cli.run_main`` prints it from the first
    process of each machine only. Returns ``error``."""
    try:
        error.same_on_every_rank = True  # type: ignore[attr-defined]
    except AttributeError:  # an exception type without __dict__: printed by every rank
        pass
    return error


@contextmanager
def same_on_every_rank() -> Iterator[None]:
    """Errors raised inside are raised alike by every rank (:func:`mark_same_on_every_rank`)."""
    try:
        yield
    except Exception as error:
        mark_same_on_every_rank(error)
        raise


_peer = {'message': None}  # the first stop message of another rank this process read
_leaving = threading.Event()  # set once this process reports its own stop (or a peer's) and exits


def _group() -> tuple[dist.Store, int, int] | None:
    """(store, rank, world size) of the joined process group with several ranks, else None."""
    if is_distributed() and dist.get_world_size() > 1:
        return dist.distributed_c10d._get_default_store(), dist.get_rank(), dist.get_world_size()
    if _run and not is_distributed():  # after cleanup(): the store object still serves the others
        return _run['store'], _run['rank'], _run['world_size']
    return None


def several_ranks() -> bool:
    """Whether this process belongs to a process group of several ranks (also after :func:`cleanup`)."""
    return _group() is not None


def leaving() -> bool:
    """Whether this process has announced that it stops (:func:`announce_stop`, :func:`peer_stopped`)."""
    return _leaving.is_set()


def announce_stop(message: str | None) -> str | None:
    """Tell the other ranks that this rank stops: ``rank R: message`` under :data:`STOP_KEY` unless another
    rank's message is there already (the first stays; None: this rank only follows another's), then mark
    this rank as gone. Rank 0 then waits, at most :data:`ACK_TIMEOUT` s, for every other rank to have
    left or acknowledged, since the store may live in its process. Returns the message as announced
    (``message`` itself outside a group of several ranks). Never raises: a store that is gone is skipped."""
    group = _group()
    if group is None:
        return message
    _leaving.set()
    store, rank, world_size = group
    text = None if message is None else f'rank {rank}: {message}'
    try:
        if text is not None:
            store.compare_set(STOP_KEY, '', text)
        store.set(f'{_LEFT_KEY}{rank}', '1')
        if rank == 0:
            store.wait([f'{_LEFT_KEY}{r}' for r in range(1, world_size)], timedelta(seconds=ACK_TIMEOUT))
    except RuntimeError:  # the store is gone, or the wait ran out: the others are on their own
        pass
    return text


def peer_stop_message() -> str | None:
    """The message another rank left with :func:`announce_stop` (read once, then kept), :data:`STORE_GONE`
    if the store cannot be reached any more, or None (also outside a process group)."""
    if _peer['message'] is not None:
        return _peer['message']
    group = _group()
    if group is None:
        return None
    store, rank, _ = group
    try:
        if not store.check([STOP_KEY]):
            return None
        message = store.get(STOP_KEY).decode()
    except RuntimeError:  # the store's host (rank 0, or torchrun) has gone
        message = STORE_GONE
    if message.startswith(f'rank {rank}: '):
        return None
    _peer['message'] = message
    return message


def acknowledge_stop() -> None:
    """Tell rank 0 that this rank has read its stop message (it may exit now; see :func:`announce_stop`)."""
    group = _group()
    if group is not None and _peer['message'] != STORE_GONE:
        store, rank, _ = group
        try:
            store.set(f'{_LEFT_KEY}{rank}', '1')
        except RuntimeError:
            pass


def peer_stopped() -> RunStopped | None:
    """After an error in this rank: :class:`RunStopped` with another rank's stop message if there is
    one (this rank's error was then only a broken collective), acknowledged and marked as this rank's
    reason to leave; None otherwise."""
    message = peer_stop_message()
    if message is None:
        return None
    acknowledge_stop()
    _leaving.set()
    return RunStopped(message)
