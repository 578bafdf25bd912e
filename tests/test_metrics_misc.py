"""PCKAccuracy, AUC and EPE give MMPose 1.3.2's numbers; results gather across ranks.

Reference numbers (EXPECTED) were produced once with upstream MMPose 1.3.2 in the reference venv:
``make_samples()`` exported to JSON (float32 values, exact) and fed, one sample per instance
(pred_instances.keypoints, gt_instances.keypoints/keypoints_visible/bboxes/head_size), to
``mmpose.evaluation.{PCKAccuracy, AUC, EPE}`` with the arguments in METRIC_CFGS.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation.base_metric import gather_results
from evaluation.keypoint_metrics import AUC, EPE, PCKAccuracy
from utils.registry import METRICS


def make_samples(seed: int = 0, n: int = 12, k: int = 17) -> dict[str, np.ndarray]:
    """Predictions near the ground truth (noise grows per instance), ~20 % keypoints invisible.

    Returns: keypoints (N, K, 2) pred, gt_keypoints (N, K, 2), keypoints_visible (N, K), bbox (N, 4)
    xyxy, head_size (N,); float32 px. One instance has a zero-size box and one no visible keypoint.
    """
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0, 200, (n, k, 2))
    pred = gt + rng.normal(0, 1, (n, k, 2)) * np.linspace(0.5, 15, n)[:, None, None]
    visible = (rng.random((n, k)) > 0.2).astype(np.float32)
    visible[3] = 0
    lo, hi = gt.min(axis=1), gt.max(axis=1)
    bbox = np.concatenate([lo, hi], axis=1)
    bbox[5, 2:] = bbox[5, :2]
    return {'keypoints': pred.astype(np.float32), 'gt_keypoints': gt.astype(np.float32),
            'keypoints_visible': visible, 'bbox': bbox.astype(np.float32),
            'head_size': rng.uniform(10, 40, n).astype(np.float32)}


METRIC_CFGS = {
    'pck_bbox_0.05': dict(type='PCKAccuracy', thr=0.05),
    'pck_all_0.2': dict(type='PCKAccuracy', thr=0.2, norm_item=['bbox', 'head', 'torso']),
    'auc_30': dict(type='AUC'),
    'auc_10_thr7': dict(type='AUC', norm_factor=10, num_thrs=7),
    'epe': dict(type='EPE'),
}

EXPECTED: dict[str, dict[str, float]] = {  # from upstream, see the module docstring
    'pck_bbox_0.05': {'PCK': 0.5855042016806723},
    'pck_all_0.2': {'PCK': 1.0, 'PCKh': 0.303828197945845, 'tPCK': 0.8716980731686614},
    'auc_30': {'AUC': 0.6613895255071727},
    'auc_10_thr7': {'AUC': 0.2919137351910461},
    'epe': {'EPE': 9.6199951171875},
}


def run(cfg: dict, samples: dict[str, np.ndarray], batch_size: int = 5) -> dict[str, float]:
    metric = METRICS.build(cfg)
    for s in range(0, len(samples['keypoints']), batch_size):
        part = {k: torch.from_numpy(v[s:s + batch_size]) for k, v in samples.items()}
        meta = {'keypoints': part['gt_keypoints'], 'keypoints_visible': part['keypoints_visible'],
                'bbox': part['bbox'], 'head_size': part['head_size']}
        metric.process({'keypoints': part['keypoints'].numpy()}, meta)
    return metric.evaluate()


@pytest.mark.parametrize('name', sorted(METRIC_CFGS))
def test_numbers_equal_mmpose(name: str) -> None:
    assert run(METRIC_CFGS[name], make_samples()) == pytest.approx(EXPECTED[name], abs=1e-12)


def test_batching_does_not_matter() -> None:
    samples = make_samples()
    assert run(METRIC_CFGS['pck_all_0.2'], samples, batch_size=1) == run(METRIC_CFGS['pck_all_0.2'], samples)


def test_perfect_predictions() -> None:
    samples = make_samples()
    samples['keypoints'] = samples['gt_keypoints'].copy()
    assert run(dict(type='EPE'), samples) == {'EPE': 0.0}
    assert run(dict(type='PCKAccuracy', thr=0.01), samples) == {'PCK': 1.0}


def test_pck_errors() -> None:
    with pytest.raises(KeyError, match='norm_item'):
        PCKAccuracy(norm_item='elbow')
    metric = PCKAccuracy(norm_item='head')
    meta = {'keypoints': np.zeros((1, 17, 2)), 'keypoints_visible': np.ones((1, 17))}
    with pytest.raises(KeyError, match='head_size'):
        metric.process({'keypoints': np.zeros((1, 17, 2))}, meta)


def test_prefix_and_reset() -> None:
    samples = make_samples()
    metric = EPE(prefix='val')
    metric.process({'keypoints': samples['keypoints']},
                   {'keypoints': samples['gt_keypoints'], 'keypoints_visible': samples['keypoints_visible']})
    assert list(metric.evaluate()) == ['val/EPE']
    assert metric.results == []
    assert AUC().prefix is None


def test_gather_results_without_process_group() -> None:
    assert gather_results([1, 2, 3], size=2) == [1, 2]
    assert gather_results([1, 2, 3]) == [1, 2, 3]


def _distributed_worker(rank: int, world: int, init_file: str, queue) -> None:
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=world)
    samples = make_samples()
    n = len(samples['keypoints'])
    # DistributedSampler-style shard: rank r gets r, r + world, ...; padded to equal length
    idx = [(rank + world * i) % n for i in range((n + world - 1) // world)]
    shard = {k: v[idx] for k, v in samples.items()}
    metric = EPE()
    metric.process({'keypoints': shard['keypoints']},
                   {'keypoints': shard['gt_keypoints'], 'keypoints_visible': shard['keypoints_visible']})
    gathered = gather_results([int(i) for i in idx], size=n)
    queue.put((rank, metric.evaluate(size=n), gathered))
    dist.destroy_process_group()


@pytest.mark.slow
def test_evaluate_gathers_across_ranks(tmp_path) -> None:
    ctx = torch.multiprocessing.get_context('spawn')
    queue = ctx.SimpleQueue()
    world = 2
    torch.multiprocessing.start_processes(_distributed_worker, args=(world, str(tmp_path / 'init'), queue),
                                          nprocs=world, start_method='spawn')
    out = sorted(queue.get() for _ in range(world))
    single = run(dict(type='EPE'), make_samples())
    for rank, metrics, gathered in out:
        assert metrics == single  # every rank gets rank 0's numbers
        assert gathered == (list(range(len(make_samples()['keypoints']))) if rank == 0 else [])
