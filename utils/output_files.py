"""Writing outputs safely: under a temporary name in the destination folder, renamed over the destination
only once complete (a failure or Ctrl-C leaves the old file, if any, untouched), with the permissions the
user's umask gives new files; and refusing a destination that is one of the inputs."""
from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from utils.errors import ArgumentError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same extension, so writers that pick the format by it work);
    when the block ends without an error it is renamed onto ``path`` (mode ``0o666 & ~umask``), otherwise
    it is removed. The folder is created if needed, and removed again (if still empty) when the write
    fails: a failed run leaves no empty output folder."""
    path = Path(path)
    created = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f'.{path.stem}.', suffix=f'.tmp{path.suffix}', dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:  # not empty (another writer), or not ours to remove
                break
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding='utf-8')


def write_image(path: str | os.PathLike, img: np.ndarray) -> None:
    """Write the BGR uint8 image ``img`` with ``cv2.imwrite`` (format from the extension) through
    :func:`atomic_output`; ``OSError`` naming ``path`` when OpenCV cannot write it."""
    with atomic_output(path) as tmp:
        if not cv2.imwrite(str(tmp), img):
            raise OSError(errno.EIO, 'OpenCV cannot write this image (unknown extension, unwritable folder '
                          'or full disk)', str(path))


def refuse_input_as_output(output: str | os.PathLike, inputs: dict[str, str | os.PathLike | None],
                           flag: str = 'output') -> None:
    """Raise :class:`ArgumentError` when ``output`` is the same file as one of the named ``inputs``
    (``{'--checkpoint': path, ...}``), so that writing it cannot destroy an input."""
    out = Path(output)
    for name, given in inputs.items():
        if given is None:
            continue
        src = Path(given)
        same = out.exists() and src.exists() and os.path.samefile(out, src)
        if same or out.resolve() == src.resolve():
            raise ArgumentError(f'{flag} {str(output)!r} is the input {name} {str(given)!r}: writing it '
                                'would destroy the input; choose another file')
