"""Shared pytest set-up: tests marked ``cuda`` skip on machines without a CUDA GPU; helpers of the
user-error tests (run an entry point, check its one error line, snapshot the files it must leave alone)."""
import hashlib
import re
from pathlib import Path

import pytest
import torch

from utils.cli import run_main


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA GPU (benchmarks/gpu_check.py runs these)')
    for item in items:
        if 'cuda' in item.keywords:
            item.add_marker(skip)


# ------------------------------------------------------------------ helpers of the user-error tests
ERROR_LINE_MAX = 400  # "one short line": at most this many characters


def run_entry_point(main, argv, capsys) -> tuple[int, str]:
    """(exit status, stderr) of ``utils.cli.run_main(main, argv)``: the path every script's __main__ takes."""
    with pytest.raises(SystemExit) as info:
        run_main(main, [str(a) for a in argv])
    return info.value.code, capsys.readouterr().err


def one_error_line(status: int, err: str, *needles: str, expected: int = 2) -> str:
    """Assert one short ``error:`` line holding every regex in ``needles``, no traceback; return it."""
    assert 'Traceback' not in err, err
    lines = [line for line in err.splitlines() if line.startswith('error: ')]
    assert len(lines) == 1, err
    assert len(lines[0]) <= ERROR_LINE_MAX, f'{len(lines[0])} characters: {lines[0]}'
    for needle in needles:
        assert re.search(needle, lines[0]), f'{needle!r} not in {lines[0]!r}'
    assert status == expected, (status, err)
    return lines[0]


def file_states(root) -> dict:
    """{path: (sha256, mtime)} of every file under ``root``, to show that a run left them as they were."""
    return {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in Path(root).rglob('*') if p.is_file()}
