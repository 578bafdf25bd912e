"""The CUDA path proven on a CPU-only machine: the device pipeline and the training step run under
``FakeTensorMode`` with fake CUDA tensors (shapes, dtypes and devices, no data), for the RLE and SimCC
recipes. Every operation is audited (:class:`TransferAudit`): each output is on the device, and
per batch there is exactly one host-to-device copy, the raw batch's non-blocking upload; no
blocking copy, no copy back to the host, no ``.item()`` / ``.tolist()`` / ``bool(tensor)``.

What stays out: nvJPEG (a stand-in returns images of the files' sizes; its stream handling is
tested in tests/test_batched_loader.py) and the autograd engine's backward pass, which needs a
CUDA driver to run on fake CUDA tensors (it asks the driver for a primary context); a stand-in
gives every parameter a fake gradient, and tests/test_train_step.py runs the real backward on the
``meta`` device, where any read-back raises.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch._subclasses import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from datasets import build_dataset
from datasets.batched import DeviceTopdownPipeline, RawSampleDataset, collate_raw, dataset_recipes
from datasets.batched.raw_batch import host_fields
from engine import LossModel, StepStats, prepare_batch, train_step
from models import build_pose_estimator
from optim import build_ema, build_optimizer, build_schedulers, ema_config
from tests.conftest import coco_cfg, needs_coco
from utils.config import load_config

REPO = Path(__file__).resolve().parents[1]
RECIPES = {'rle': REPO / 'configs/rle/rle_mbv2-0.5x_aic-coco-192x192.py',
           'simcc': REPO / 'configs/simcc/simcc_mbv2-0.75x-wo-deconv_aic-coco-192x192.py'}
# ops whose result is read on the host: a device sync each
READ_BACKS = {'aten._local_scalar_dense', 'aten.equal', 'aten.is_nonzero', 'aten.item', 'aten.allclose'}


class TransferAudit(TorchDispatchMode):
    """Records, for every ATen operation run inside it: host-to-device copies (``uploads``: list of
    non_blocking flags), copies to the host (``downloads``), host read-backs (``read_backs``) and
    operations that compute on the host or leave the device (``off_device``, views of host tensors
    aside: slicing the raw batch's bytes costs nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.uploads: list[bool] = []
        self.downloads: list[str] = []
        self.read_backs: list[str] = []
        self.off_device: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = str(func.overloadpacket)
        if name.startswith('prim.'):  # metadata queries (device, layout)
            return out
        flat = [*args, *kwargs.values()]
        inputs = [a for a in flat if isinstance(a, torch.Tensor)]
        inputs += [t for a in flat if isinstance(a, (list, tuple)) for t in a if isinstance(t, torch.Tensor)]
        results = out if isinstance(out, (list, tuple)) else [out]
        outputs = [o for o in results if isinstance(o, torch.Tensor)]
        on_host = [t.device.type == 'cpu' for t in inputs]
        to_device = [t.device.type == 'cuda' for t in outputs]
        if name in READ_BACKS:
            self.read_backs.append(name)
        elif inputs and all(on_host) and outputs and all(to_device):
            self.uploads.append(bool(kwargs.get('non_blocking', False)) if name == 'aten._to_copy'
                                else False)  # copy_ from the host into a device tensor: blocking
        elif any(t.device.type == 'cuda' for t in inputs) and not all(to_device):
            self.downloads.append(name)
        elif not func.is_view and not all(to_device):
            self.off_device.append(name)
        return out


def _fake_backward(parameters):
    def backward(loss, *args, **kwargs):
        for p in parameters:
            if p.requires_grad:
                p.grad = torch.ones_like(p) if p.grad is None else p.grad + 1
    return backward


@needs_coco
@pytest.mark.parametrize('family', sorted(RECIPES))
@pytest.mark.slow
def test_device_pipeline_and_step_on_fake_cuda_copy_once_and_read_nothing_back(family, monkeypatch):
    cfg = load_config(RECIPES[family])
    dataset_cfg = coco_cfg(pipeline=cfg.train_dataloader['dataset']['pipeline'])
    recipes = dataset_recipes(dataset_cfg)  # the recipe's photometric steps included
    raw_ds = RawSampleDataset(build_dataset(dataset_cfg), recipes)
    raws = [collate_raw([raw_ds[(i % len(raw_ds), 100 * k + i)] for i in range(8)]) for k in range(2)]
    sizes = [[hw for hw, span in zip(host_fields(raw, ['img_hw'])['img_hw'].tolist(), raw['jpeg']) if span]
             for raw in raws]  # of the JPEGs, for the stand-in decoder
    estimator = build_pose_estimator(cfg.model)  # real weights: .to() of fake parameters cannot swap them
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        model = estimator.to('cuda')
        train_model = LossModel(model).train()
        monkeypatch.setattr(torch.Tensor, 'backward', _fake_backward(list(train_model.parameters())))
        optim = build_optimizer(model, cfg.optim_wrapper)
        schedulers = build_schedulers(optim, cfg.param_scheduler, iters_per_epoch=10,
                                      max_epochs=int(cfg.train_cfg['max_epochs']))
        ema = build_ema(model, ema_config(cfg))
        stats = StepStats(capacity=4)
        pipeline = DeviceTopdownPipeline(recipes, 'cuda')
        for it, raw in enumerate(raws):
            pipeline.decoder = lambda data, it=it: [
                torch.empty((3, h, w), dtype=torch.uint8, device='cuda') for h, w in sizes[it][:len(data)]]
            with TransferAudit() as produced:
                batch = pipeline(raw)
            assert produced.uploads == [True], 'one non-blocking upload per batch, nothing else'
            assert not produced.downloads and not produced.read_backs and not produced.off_device, produced
            tensors = [leaf for leaf in tree_leaves(batch) if isinstance(leaf, torch.Tensor)]
            assert tensors and all(t.device.type == 'cuda' for t in tensors)
            assert batch['inputs'].shape == (8, 3, *cfg.codec['input_size'][::-1])
            with TransferAudit() as stepped:
                losses = train_step(train_model, optim, prepare_batch(batch, torch.device('cuda'),
                                                                      channels_last=True), it, stats, ema,
                                    schedulers)
            assert not stepped.uploads and not stepped.downloads and not stepped.read_backs, stepped
            assert not stepped.off_device, stepped.off_device
            assert all(v.device.type == 'cuda' for v in losses.values())
    assert stats.readbacks == 0 and len(stats.rows) == 2
