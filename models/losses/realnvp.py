"""RealNVP normalising flow used by :class:`models.losses.regression_loss.RLELoss`.

Six affine coupling layers on 2-D points, alternating which coordinate is kept.
Parameter names (``s.{i}.{j}``, ``t.{i}.{j}``, buffers ``loc``, ``cov``, ``mask``) match MMPose 1.3.2, so
checkpoints carrying ``head.loss_module.flow_model.*`` load unchanged (53,784 parameters).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

_LOG_2PI = math.log(2 * math.pi)


def _coupling_net(final_tanh: bool) -> nn.Sequential:
    """2 -> 64 -> 64 -> 2 MLP with LeakyReLU; ``final_tanh`` bounds the scale branch."""
    layers: list[nn.Module] = [nn.Linear(2, 64), nn.LeakyReLU(), nn.Linear(64, 64), nn.LeakyReLU(),
                               nn.Linear(64, 2)]
    if final_tanh:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class RealNVP(nn.Module):
    """Density model over 2-D residuals with a standard-normal prior (RLE, Li et al. 2021).

    The prior's ``loc`` (zeros) and ``cov`` (identity) buffers are kept for checkpoint compatibility; the
    log-density is the closed form of that standard normal (no ``torch.distributions`` object, whose
    argument checks read values back to the host and reject NaN/inf instead of letting them reach the loss).
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer('loc', torch.zeros(2))
        self.register_buffer('cov', torch.eye(2))
        self.register_buffer('mask', torch.tensor([[0, 1], [1, 0]] * 3, dtype=torch.float32))
        self.s = nn.ModuleList(_coupling_net(final_tanh=True) for _ in range(len(self.mask)))
        self.t = nn.ModuleList(_coupling_net(final_tanh=False) for _ in range(len(self.mask)))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight, gain=0.01)

    def backward_p(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map data points ``x`` (M, 2) to the latent space.

        Returns:
            ``(z, log_det)``: latent points (M, 2) and the log-determinant of the Jacobian (M,).
        """
        log_det = x.new_zeros(x.shape[0])
        z = x
        for i in reversed(range(len(self.t))):
            keep = self.mask[i]
            z_kept = keep * z
            s = self.s[i](z_kept) * (1 - keep)
            t = self.t[i](z_kept) * (1 - keep)
            z = (1 - keep) * (z - t) * torch.exp(-s) + z_kept
            log_det = log_det - s.sum(dim=1)
        return z, log_det

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-density of points ``x`` (M, 2) under the flow; returns (M,). Non-finite points give
        non-finite densities (no exception)."""
        z, log_det = self.backward_p(x)
        prior = -0.5 * (z - self.loc).square().sum(dim=1) - 0.5 * z.shape[1] * _LOG_2PI
        return prior + log_det
