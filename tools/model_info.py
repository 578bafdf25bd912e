"""Print a pose or detector config's parameter counts and FLOPs as one JSON line.

Usage: python tools/model_info.py CONFIG [--cfg-options ...]

Output keys: params (backbone + neck + head, excluding parameters that live only in the loss, such as
RLE's RealNVP flow), backbone, neck, head (without its loss module), loss_only (the loss modules'
parameters), flops: multiply-accumulate operations (1 MAC = 1 "FLOP", the fvcore / mmengine convention)
of every Conv2d, ConvTranspose2d and Linear layer for ONE input at input_size [w, h]: a pose model's crop
size (its codec's input_size), a detector's padded test image (the Pad size of its test pipeline). Biases,
norms and activations are not counted. The model is built on the meta device: no weights are read or
allocated, so it takes well under a second for any config.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `python tools/x.py`

import json
from typing import Any

import torch
from torch import nn

from deploy.export import detector_input_size
from models.loading import is_detector_config, model_sections
from utils import cli
from utils.config import load_config, require_sections
from utils.registry import MODELS
from utils.threads import set_threads


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


def model_info(cfg: Any) -> dict[str, Any]:
    """The counts of a loaded pose or detector config (see the module docstring)."""
    with torch.device('meta'):
        model = MODELS.build(cfg.model, cfg_path='model').eval()
    detector = is_detector_config(cfg)
    head = model.bbox_head if detector else model.head
    w, h = detector_input_size(cfg) if detector else cfg.codec['input_size']
    info = dict(backbone=count_params(model.backbone), neck=count_params(getattr(model, 'neck', None)),
                head=count_params(head, exclude='loss_module'),
                loss_only=count_params(getattr(head, 'loss_module', None)))
    with torch.device('meta'):
        flops = count_macs(model, (1, 3, h, w))
    return dict(params=info['backbone'] + info['neck'] + info['head'], **info, flops=flops,
                input_size=[w, h])


def main(argv: list[str] | None = None) -> None:
    parser = cli.ArgumentParser(description=__doc__)
    cli.add_config_argument(parser, help='pose or detector config file')
    cli.add_threads_argument(parser)
    cli.add_cfg_options_argument(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    cfg = load_config(args.config, args.cfg_options)
    require_sections(cfg, model_sections(cfg), 'tools/model_info.py')
    print(json.dumps(model_info(cfg)))


if __name__ == '__main__':
    cli.run_main(main)
