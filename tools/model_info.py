"""Print a pose config's parameter counts and FLOPs as one JSON line.

Usage: ``python tools/model_info.py CONFIG [--cfg-options ...]``

Output keys: ``params`` (backbone + neck + head, excluding parameters that live only in the loss, such as
RLE's RealNVP flow), ``backbone``, ``neck``, ``head`` (without its loss module), ``loss_only`` (the loss
modules' parameters) and ``flops``: multiply-accumulate operations (1 MAC = 1 "FLOP", the fvcore /
mmengine convention) of every Conv2d, ConvTranspose2d and Linear layer for ONE input at the config's input
size (from the head's codec), biases, norms and activations not counted.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `python tools/x.py`

import argparse
import json
from typing import Any

import torch
from torch import nn

from models import build_pose_estimator
from utils.cli import run_main
from utils.config import add_cfg_options_argument, load_config


def count_params(module: nn.Module | None, exclude: str | None = None) -> int:
    """Number of parameters of ``module`` (0 for None), skipping those under submodule ``exclude``."""
    if module is None:
        return 0
    excluded = getattr(module, exclude, None) if exclude else None
    skip = {id(p) for p in excluded.parameters()} if excluded is not None else set()
    return sum(p.numel() for p in module.parameters() if id(p) not in skip)


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of conv / transposed conv / linear layers for one forward of ``input_shape``."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * k
        elif isinstance(module, nn.ConvTranspose2d):
            k = module.out_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += inputs[0].numel() * k
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape))
    finally:
        for h in handles:
            h.remove()
    return total


def model_info(cfg: Any) -> dict[str, int]:
    """The six counts for a loaded config (see the module docstring)."""
    model = build_pose_estimator(cfg.model).eval()
    head = model.head
    w, h = cfg.codec['input_size']
    info = dict(backbone=count_params(model.backbone), neck=count_params(model.neck),
                head=count_params(head, exclude='loss_module'),
                loss_only=count_params(getattr(head, 'loss_module', None)))
    return dict(params=info['backbone'] + info['neck'] + info['head'], **info,
                flops=count_macs(model, (1, 3, h, w)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='pose config file')
    add_cfg_options_argument(parser)
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    print(json.dumps(model_info(cfg)))


if __name__ == '__main__':
    run_main(main)
