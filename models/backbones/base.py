"""What the pose backbones share: staged forward, ``init_cfg`` loading, frozen stages and ``norm_eval``."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from models.checkpoints import load_pretrained
from models.layers import freeze, set_norm_eval


def run_stages(x: torch.Tensor, stages: Iterable[nn.Module],
               out_indices: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """Apply ``stages`` in order to ``x`` (B, C, H, W); return the outputs of the stages whose index is in
    ``out_indices``, in stage order."""
    outs = []
    for index, stage in enumerate(stages):
        x = stage(x)
        if index in out_indices:
            outs.append(x)
    return tuple(outs)


class StagedBackbone(nn.Module):
    """Base of MobileNetV2 / ShuffleNetV2. Subclasses set ``frozen_stages``, ``norm_eval`` and ``init_cfg``
    and define ``reset_parameters()`` (default init) and ``frozen_modules()`` (what ``frozen_stages``
    freezes, stem first)."""

    frozen_stages: int
    norm_eval: bool
    init_cfg: dict | None

    def reset_parameters(self) -> None:
        raise NotImplementedError

    def frozen_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def init_weights(self) -> None:
        """Default init, then the ``Pretrained`` checkpoint of ``init_cfg`` if any (strict load)."""
        self.reset_parameters()
        if self.init_cfg is not None:
            load_pretrained(self, self.init_cfg, cfg_key='model.backbone.init_cfg', where='backbone.')

    def _freeze_stages(self) -> None:
        for module in self.frozen_modules():
            freeze(module)

    def train(self, mode: bool = True) -> StagedBackbone:
        """Set train/eval mode, keeping frozen stages (and BN layers if ``norm_eval``) in eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            set_norm_eval(self)
        return self
