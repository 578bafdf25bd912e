"""train.py --input-pipeline device on the CPU: trains (stage 2 included), validates, and a run killed
mid-epoch and resumed ends with exactly the weights of an uninterrupted one."""
import re
import signal

import pytest
import torch

from models.checkpoints import read_checkpoint
from tests.conftest import needs_data, start_and_wait_for, tiny_config, train_command
from utils.config import Config

# a stage-2 pipeline the per-sample loader runs but the batched one cannot: a top-level KeypointConverter
STAGE2_WITH_CONVERTER = ' '.join("""[dict(type='LoadImage'),
    dict(type='KeypointConverter', num_keypoints=17, mapping=[(i, i) for i in range(17)]),
    dict(type='GetBBoxCenterScale'), dict(type='TopdownAffine', input_size=(192, 192)),
    dict(type='GenerateTarget', encoder=dict(type='RegressionLabel', input_size=(192, 192))),
    dict(type='PackPoseInputs')]""".split())  # one line: it goes inside the dedented config text


@needs_data
@pytest.mark.slow
def test_device_pipeline_trains_resumes_bitwise_and_validates(tmp_path, run_training):
    # the RLE COCO+AIC recipe (photometric steps included) on the COCO sample: 12 training instances,
    # batch 2, 6 iterations per epoch; validation only after the last epoch
    cfg_file = tiny_config(tmp_path, 'rle', max_epochs=2, batch_size=2,
                           extra='train_cfg = dict(max_epochs=2, val_interval=2)\n')
    straight, interrupted = tmp_path / 'straight', tmp_path / 'interrupted'
    run_training(train_command(cfg_file, straight, '--input-pipeline', 'device'))
    log = (straight / 'train.log').read_text()
    assert 'Input pipeline: batched on cpu' in log
    assert 'Epoch 2: switched to the stage-2 pipeline' in log
    assert re.search(r'Epoch\(val\) \[2\]  coco/AP: [0-9.]+', log)
    assert Config.fromfile(straight / cfg_file.name).input_pipeline == 'device'

    proc = start_and_wait_for(train_command(cfg_file, interrupted, '--input-pipeline', 'device'),
                              interrupted / 'train.log', 'Epoch(train) [2][2/6]')
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_checkpoint(interrupted / 'last.pth')['epoch'] == 1
    run_training(train_command(cfg_file, interrupted, '--input-pipeline', 'device', '--resume'))
    a, b = read_checkpoint(straight / 'last.pth'), read_checkpoint(interrupted / 'last.pth')
    different = [k for k in a['state_dict'] if not torch.equal(a['state_dict'][k], b['state_dict'][k])]
    assert not different
    assert a['best'] == b['best']


@needs_data
@pytest.mark.slow
def test_unsupported_recipe_falls_back_with_a_warning(tmp_path, run_training):
    cfg_file = tiny_config(tmp_path, 'rle', max_epochs=1, batch_size=6,
                           train_dataset_args=f'pipeline_stage2={STAGE2_WITH_CONVERTER}')
    work_dir = tmp_path / 'work'
    run_training(train_command(cfg_file, work_dir, '--input-pipeline', 'device'))
    log = (work_dir / 'train.log').read_text()
    assert 'pipeline_stage2[1] KeypointConverter: not supported' in log
    assert 'using the per-sample CPU pipeline' in log
    assert 'Input pipeline: per-sample' in log
