"""train.py end to end on the 4-image COCO sample: each README config family, stage-2 switch, outputs,
non-finite loss and missing-data failures. CPU, batch 4, a few iterations per run."""
import re
from pathlib import Path

import pytest
import torch

import train
from datasets import build_dataloader
from engine import LossModel, NonFiniteLossError, RunStopped
from evaluation import evaluate_model
from models import build_pose_estimator
from models.checkpoints import load_checkpoint, read_checkpoint
from tests.conftest import FAMILIES, UDP_BACKBONE, needs_data, needs_weights, tiny_config
from utils.config import Config, load_config
from utils.registry import METRICS


@needs_data
@pytest.mark.parametrize('family', sorted(FAMILIES))
@pytest.mark.slow
def test_family_trains_validates_and_writes_outputs(tmp_path, family):
    epochs = 2 if family == 'rle' else 1  # one family runs two epochs: validation twice, stage 2 in epoch 2
    cfg_file = tiny_config(tmp_path, family, max_epochs=epochs)
    work_dir = tmp_path / 'work'
    # bfloat16 autocast (CPU here) through the whole loop, stage 2 included; on the family whose CPU bf16
    # kernels are the least slow (the heatmap head's deconvolutions take 7x longer than in fp32)
    amp = ['--amp'] if family == 'rle' else []
    args = ['--cfg_file', str(cfg_file), '--work-dir', str(work_dir), '--device', 'cpu', *amp]
    assert train.main(args) == 0

    log = (work_dir / 'train.log').read_text()
    assert 'PyTorch: ' in log and 'World size: 1' in log
    assert ("'type': 'AmpOptimWrapper'" in log) == bool(amp)
    for e in range(1, epochs + 1):
        assert f'Epoch(train) [{e}][1/3]' in log and f'Epoch(train) [{e}][3/3]' in log
        assert re.search(rf'Epoch\(val\) \[{e}\]  coco/AP: [0-9.]+', log)
    train_line = re.search(r'Epoch\(train\) \[1\]\[1/3\].*', log).group(0)
    for field in ('lr: ', 'eta: ', 'time: ', 'data_time: ', 'grad_norm: ', 'loss_kpt: '):
        assert field in train_line
    # stage 2 = the last stage2_num_epochs (1) epochs: 0-based epoch max_epochs - 1, not earlier
    switched = re.findall(r'Epoch (\d+): switched to the stage-2 pipeline', log)
    assert switched == ([] if family == 'heatmap' else [str(epochs)])
    assert list((work_dir / 'tensorboard').glob('events.out.tfevents.*'))
    assert Config.fromfile(work_dir / cfg_file.name).train_cfg['max_epochs'] == epochs

    last = read_checkpoint(work_dir / 'last.pth')
    best = read_checkpoint(work_dir / 'best.pth')
    assert (last['epoch'], last['iter']) == (epochs, 3 * epochs)
    assert best['best']['key'] == 'coco/AP' and best['epoch'] == best['best']['epoch']
    assert {'optimizer', 'schedulers', 'meta'} <= set(last) and 'rng' not in last  # epochs reseed
    assert f'max_epochs = {epochs}' in last['meta']['config']
    model = build_pose_estimator(Config.fromfile(cfg_file).model)
    load_checkpoint(model, work_dir / 'last.pth')  # strict: every key matches a fresh model
    assert not list(work_dir.glob('*.tmp'))


@needs_data
@pytest.mark.slow
def test_ema_checkpoint_then_non_finite_loss_keeps_it(tmp_path, monkeypatch):
    cfg_file = tiny_config(tmp_path, 'rle', max_epochs=1, extra="""
        ema = dict(type='ExpMomentumEMA', momentum=0.0002, gamma=2000, update_buffers=True)
        """)
    work_dir = tmp_path / 'work'
    args = ['--cfg_file', str(cfg_file), '--work-dir', str(work_dir), '--device', 'cpu']
    assert train.main(args) == 0
    before = (work_dir / 'last.pth').read_bytes()
    last = read_checkpoint(work_dir / 'last.pth')
    assert last['ema_steps'] == 3
    deployed, raw = last['state_dict'], last['train_state_dict']  # EMA weights are the deployed ones
    assert deployed.keys() == raw.keys()
    assert any(not torch.equal(deployed[k], raw[k]) for k in raw if raw[k].is_floating_point())

    real_loss = LossModel.forward
    calls = []

    def poisoned(self, inputs, targets):
        losses = real_loss(self, inputs, targets)
        calls.append(1)
        if len(calls) == 2:
            losses['loss_kpt'] = losses['loss_kpt'] * float('nan')
        return losses

    monkeypatch.setattr(LossModel, 'forward', poisoned)
    with pytest.raises(NonFiniteLossError):  # run_main prints it as the one error line
        train.main(args + ['--resume', '--cfg-options', 'train_cfg.max_epochs=2'])
    log = (work_dir / 'train.log').read_text()
    assert 'non-finite loss at iteration 5: loss_kpt = nan' in log  # 3 iterations per epoch, 2nd of epoch 2
    assert (work_dir / 'last.pth').read_bytes() == before


@needs_data
def test_out_of_memory_names_the_batch_size(tmp_path, monkeypatch):
    def out_of_memory(self, inputs, targets):
        raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')

    monkeypatch.setattr(LossModel, 'forward', out_of_memory)
    cfg_file = tiny_config(tmp_path, 'rle', max_epochs=1)
    args = ['--cfg_file', str(cfg_file), '--work-dir', str(tmp_path / 'work'), '--device', 'cpu']
    with pytest.raises(RunStopped):
        train.main(args)
    log = (tmp_path / 'work' / 'train.log').read_text()
    assert re.search('CUDA out of memory at batch size 4 per GPU.*train_dataloader.batch_size=2', log)
    assert not (tmp_path / 'work' / 'last.pth').exists()


def test_missing_dataset_path_fails_before_training(tmp_path):
    cfg_file = tiny_config(tmp_path, 'rle')
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / 'nowhere' / 'coco/test_coco.json'))):
        train.main(['--cfg_file', str(cfg_file), '--work-dir', str(tmp_path / 'work'), '--device', 'cpu',
                    '--cfg-options', f'train_dataloader.dataset.datasets.0.data_root={tmp_path / "nowhere"}'])
    assert not (tmp_path / 'work').exists()


def test_resume_auto_finds_the_newest_work_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for stamp in ('202401010000', '202402010000'):
        (tmp_path / 'work_dirs' / f'{stamp}_cfg').mkdir(parents=True)
        (tmp_path / 'work_dirs' / f'{stamp}_cfg' / 'last.pth').write_bytes(b'x')
    args = train.parse_args(['--cfg_file', 'configs/cfg.py', '--resume'])
    work_dir, resume = train.resolve_work_dir(args, args.cfg_file)
    assert work_dir == Path('work_dirs/202402010000_cfg') and resume == str(work_dir / 'last.pth')
    args = train.parse_args(['--cfg_file', 'configs/cfg.py', '--resume_ckpt', 'work_dirs/202401010000_cfg'])
    assert train.resolve_work_dir(args, args.cfg_file)[1] == 'work_dirs/202401010000_cfg/last.pth'
    args = train.parse_args(['--cfg_file', 'configs/other.py'])
    work_dir, resume = train.resolve_work_dir(args, args.cfg_file)
    assert re.fullmatch(r'work_dirs/\d{14}_other', str(work_dir)) and resume is None and work_dir.is_dir()


@needs_data
@needs_weights
@pytest.mark.slow
def test_rle_overfits_the_sample_from_the_pretrained_backbone(tmp_path):
    """From the real MobileNetV2-0.5x backbone (init_cfg, prefix backbone.), RLE training on the 12
    annotated people of the COCO sample (flip augmentation only, cosine lr to 0 so that BatchNorm's
    running statistics settle) raises the ground-truth-box AP far above its start (~0.55 vs 0). 160x160
    crops: the AP of 192x192 ones in 3/4 of the time."""
    size = (160, 160)
    pipeline = f"""[dict(type='LoadImage'), dict(type='GetBBoxCenterScale'),
                    dict(type='RandomFlip', direction='horizontal'),
                    dict(type='TopdownAffine', input_size={size}),
                    dict(type='GenerateTarget', encoder=dict(type='RegressionLabel', input_size={size})),
                    dict(type='PackPoseInputs')]"""
    crop_size = ['--cfg-options', f'codec.input_size={size}']  # the head and val pipeline follow the codec
    cfg_file = tiny_config(tmp_path, 'rle', max_epochs=50, batch_size=12, extra=f"""
        model = dict(backbone=dict(init_cfg=dict(type='Pretrained', prefix='backbone.',
                                                 checkpoint='{UDP_BACKBONE}')))
        train_cfg = dict(max_epochs=50, val_interval=50)
        param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3),
                           dict(type='CosineAnnealingLR', eta_min=0.0, begin=0, end=50, by_epoch=True)]
        log_interval = 10
        """, train_dataset_args=f'pipeline={pipeline}, pipeline_stage2=None')
    cfg = load_config(cfg_file, crop_size[1:])
    affine = cfg.val_dataloader['dataset']['pipeline'][2]
    assert cfg.model['head']['decoder']['input_size'] == size and affine['input_size'] == size
    model = build_pose_estimator(cfg.model)
    model.init_weights()
    loader = build_dataloader(cfg.val_dataloader, seed=0, distributed=False)
    metric = METRICS.build(cfg.val_evaluator)
    start_ap = evaluate_model(model, loader, metric, 'cpu', progress=False)['coco/AP']

    work_dir = tmp_path / 'work'
    assert train.main(['--cfg_file', str(cfg_file), '--work-dir', str(work_dir), '--device', 'cpu',
                       *crop_size]) == 0
    final_ap = read_checkpoint(work_dir / 'best.pth')['best']['score']
    assert final_ap > start_ap + 0.3, (start_ap, final_ap)
