"""tools/publish_model.py: training state dropped, tensors unchanged, SHA-256 prefix in the file name."""
import hashlib
from pathlib import Path

import numpy as np
import torch

from models.backbones.mobilenet_v2 import MobileNetV2
from models.checkpoints import CHECKPOINT_MARKER, load_checkpoint, read_checkpoint, save_checkpoint
from models.checkpoints.model_zoo import hash_prefix_from_name
from tests.conftest import HistoryBuffer
from tools.publish_model import main


def test_publish_strips_training_state_and_names_the_hash(tmp_path: Path, capsys) -> None:
    model = MobileNetV2(widen_factor=0.5)
    run = tmp_path / 'work_dir'
    save_checkpoint(run / 'best.pth', {
        'state_dict': model.state_dict(), 'optimizer': {'state': {0: {'exp_avg': torch.ones(3)}}},
        'schedulers': [{'last_epoch': 3}], 'rng': {'torch': torch.get_rng_state()},
        'message_hub': HistoryBuffer(),  # an unknown class: read as a placeholder, dropped
        'meta': {'epoch': 3, 'seed': np.int64(0), 'hub': HistoryBuffer()}})
    published = main([str(run), str(tmp_path / 'out' / 'rle_mbv2.pth')])  # a work dir: its best.pth
    digest = hashlib.sha256(published.read_bytes()).hexdigest()
    assert published == tmp_path / 'out' / f'rle_mbv2-{digest[:8]}.pth'
    assert hash_prefix_from_name(published.name) == digest[:8]
    assert sorted(p.name for p in published.parent.iterdir()) == [published.name]  # no temporary left
    checkpoint = read_checkpoint(published)
    assert set(checkpoint) == {'state_dict', 'meta'}
    assert checkpoint['meta'] == {'epoch': 3, 'seed': 0, CHECKPOINT_MARKER: 1}
    fresh = MobileNetV2(widen_factor=0.5)
    load_checkpoint(fresh, published, strict=True)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    out = capsys.readouterr().out
    assert 'dropped optimizer, schedulers, rng, message_hub' in out and digest in out
