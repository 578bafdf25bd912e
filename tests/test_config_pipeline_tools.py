"""The tools that read a config's pipelines take them from its dataloaders' datasets, for every shape of
dataset: benchmarks/bench_pipeline.py and tools/browse_dataset.py on the COCO+AIC recipe (a CombinedDataset
whose AIC member runs its own KeypointConverter) pointed at the sample data with --cfg-options, and on a
child config whose training dataset is a RepeatDataset (skipped without ../shared/data); and the pipelines
every shipped pose config gives them."""
from __future__ import annotations

from pathlib import Path

import cv2
import pytest

import benchmarks.bench_pipeline as bench_pipeline
from tests.conftest import DATA, REPO, needs_data
from tools import browse_dataset
from utils.config import load_config

RLE = REPO / 'configs' / 'rle' / 'rle_mbv2-0.5x_aic-coco-192x192.py'
# the recipe's COCO (x3) + AIC training set and its COCO validation set, on the sample images
ON_SAMPLE = [f'data_root={DATA}/',
             'train_dataloader.dataset.datasets.0.dataset.ann_file=coco/test_coco.json',
             'train_dataloader.dataset.datasets.0.dataset.data_prefix.img=coco/',
             'train_dataloader.dataset.datasets.1.ann_file=aic/test_aic.json',
             'train_dataloader.dataset.datasets.1.data_prefix.img=aic/',
             'val_dataloader.dataset.ann_file=coco/test_coco.json', 'val_dataloader.dataset.bbox_file=None',
             'val_dataloader.dataset.data_prefix.img=coco/']


POSE_CONFIGS = sorted(p for p in (REPO / 'configs').rglob('*.py')
                      if '_base_' not in p.parts and 'detection' not in p.parts)


@pytest.mark.parametrize('path', POSE_CONFIGS, ids=lambda p: p.name)
def test_every_pose_config_gives_the_tools_its_pipelines(path):
    cfg = load_config(path)
    for phase in ('train', 'val'):
        dataset = cfg[f'{phase}_dataloader'].dataset
        on_file = bench_pipeline.dataset_config(cfg, phase, '/data', 'ann.json')
        assert on_file['ann_file'] == '/data/ann.json'
        assert on_file['pipeline'][-1]['type'] == 'PackPoseInputs'
        assert on_file.get('pipeline_stage2') == dataset.get('pipeline_stage2')
        assert bench_pipeline.dataset_config(cfg, phase, None, 'ann.json') is dataset


@pytest.fixture
def repeat_cfg(tmp_path) -> Path:
    """A child of the RLE recipe training on the COCO sample through a RepeatDataset owning the pipeline."""
    path = tmp_path / 'repeat.py'
    path.write_text(
        f"_base_ = [{str(RLE)!r}]\n"
        f"data_root = '{DATA}/'\n"
        "train_dataloader = dict(dataset=dict(_delete_=True, type='RepeatDataset', times=2, dataset=dict(\n"
        "    type='CocoDataset', data_root=data_root, ann_file='coco/test_coco.json',\n"
        "    data_prefix=dict(img='coco/'), pipeline=train_pipeline,\n"
        "    pipeline_stage2=train_pipeline_stage2)))\n")
    return path


def bench(capsys, config, *extra: str) -> str:
    argv = [str(config), '--n', '4', '--repeats', '1', '--workers', '0', '--default-threads', *extra]
    assert bench_pipeline.main(argv) == 0
    return capsys.readouterr().out


@needs_data
def test_bench_pipeline_on_a_combined_dataset(capsys):
    out = bench(capsys, RLE, '--batched', '--batch-size', '2', '--cfg-options', *ON_SAMPLE)
    # 12 COCO people x 3 + the AIC people, through their own pipelines and the combined one
    assert 'train pipeline, 45 instances of train_dataloader.dataset' in out
    assert 'single process:' in out and 'batched pipeline, per batch of 2 on the CPU' in out


@needs_data
def test_bench_pipeline_val_phase_and_data_dir(capsys):
    assert 'val pipeline, 12 instances of val_dataloader.dataset' in bench(
        capsys, RLE, '--phase', 'val', '--cfg-options', *ON_SAMPLE)
    out = bench(capsys, RLE, '--data-dir', str(DATA / 'coco'), '--ann-file', 'test_coco.json')
    assert f"12 instances of {DATA / 'coco' / 'test_coco.json'}" in out


@needs_data
def test_bench_pipeline_on_a_repeat_dataset(capsys, repeat_cfg):
    assert '24 instances of train_dataloader.dataset' in bench(capsys, repeat_cfg, '--batched',
                                                               '--batch-size', '2')
    assert '12 instances of' in bench(capsys, repeat_cfg, '--data-dir', str(DATA / 'coco'))


def crops(tmp_path: Path, config: Path, *options: str, phase: str = 'train') -> list:
    out = tmp_path / f'vis_{len(list(tmp_path.iterdir()))}'
    argv = [str(config), '--output-dir', str(out), '--n', '3', '--phase', phase,
            *(['--cfg-options', *options] if options else [])]
    assert browse_dataset.main(argv) == 0
    return [cv2.imread(str(f)) for f in sorted(out.glob('*.jpg'))]


@needs_data
def test_browse_dataset_on_a_combined_dataset_follows_a_codec_override(tmp_path):
    written = crops(tmp_path, RLE, *ON_SAMPLE, 'codec.input_size=(128,160)')
    assert len(written) == 3 and all(c.shape == (160, 128, 3) for c in written)
    written = crops(tmp_path, RLE, *ON_SAMPLE, phase='val')
    assert len(written) == 3 and all(c.shape == (192, 192, 3) for c in written)


@needs_data
def test_browse_dataset_on_a_repeat_dataset(tmp_path, repeat_cfg):
    written = crops(tmp_path, repeat_cfg)
    assert len(written) == 3 and all(c.shape == (192, 192, 3) for c in written)
