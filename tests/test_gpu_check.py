"""benchmarks/gpu_check.py without a GPU: one clear error line and exit status 2 (its --dry-run, which runs
every row on the CPU, is a benchmark-length run and is not part of the suite)."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the no-CUDA path')
def test_without_cuda_it_says_so_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, 'benchmarks/gpu_check.py', '--out-dir', str(tmp_path / 'out')],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: no CUDA device') and '--dry-run' in lines[0]
    assert not (tmp_path / 'out').exists()
