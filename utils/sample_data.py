"""Where the sample data and weights live: one folder holding ``data/`` (the COCO and AI Challenger samples, a
video) and ``weights/`` (the original project's checkpoints), by default ``shared`` beside the repository
(``../shared``), elsewhere when the environment variable ``MMPOSE_CLEAN_SHARED`` names another folder.

The tests (``tests/conftest.py``), ``benchmarks/gpu_check.py --shared`` and
``tools/prepare_gpu_bundle.py --shared`` find it through :func:`shared_dir`.
"""
from __future__ import annotations

import os
from pathlib import Path

SHARED_ENV = 'MMPOSE_CLEAN_SHARED'
REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir(folder: str | os.PathLike | None = None) -> Path:
    """The sample data folder: ``folder`` when given, else ``$MMPOSE_CLEAN_SHARED``, else ``../shared``
    beside the repository; absolute (so that it holds for subprocesses in other working directories)."""
    chosen = folder or os.environ.get(SHARED_ENV) or REPO_ROOT.parent / 'shared'
    return Path(chosen).expanduser().absolute()
