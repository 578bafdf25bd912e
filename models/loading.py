"""Build the model of a config and load its weights: float pose estimators, their QAT version, detectors;
prepare a model for (quantisation-aware) training."""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from torch import nn

from models.checkpoints import load_checkpoint, read_checkpoint, state_dict_of
from models.checkpoints.weights import check_input_size, trained_input_size
from models.qat import prepare_qat
from utils.registry import MODELS

logger = logging.getLogger('mmpose_clean.models')


def is_detector_config(cfg: Mapping[str, Any]) -> bool:
    """True for a detector config (``model.bbox_head``, e.g. RTMDet), False for a pose config (or none)."""
    return 'bbox_head' in (cfg.get('model') or {})


def model_sections(cfg: Mapping[str, Any]) -> list[str]:
    """The config sections building a model and feeding it need (for ``utils.config.require_sections``):
    ``model``, and for a pose model ``codec`` (its input size)."""
    return ['model'] if is_detector_config(cfg) else ['model', 'codec']


def is_qat_config(cfg: Mapping[str, Any]) -> bool:
    """True when the config trains with ``quantization = dict(mode='qat', ...)``."""
    return (cfg.get('quantization') or {}).get('mode') == 'qat'


def load_model(cfg: Mapping[str, Any], checkpoint: str | os.PathLike | None,
               origin: str | None = 'CHECKPOINT') -> nn.Module:
    """The config's model in eval mode on the CPU with ``checkpoint`` loaded (None: random weights).

    Pose configs give a TopdownPoseEstimator, or its QAT version (:func:`models.qat.prepare_qat`) for a QAT
    config, whose checkpoint must then come from that QAT run; detector configs give the detector.
    ``origin`` names the argument that gave the checkpoint in messages (``'CHECKPOINT'``).
    """
    if checkpoint is not None and not os.path.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {os.fspath(checkpoint)!r}')
    model = MODELS.build(cfg['model'], cfg_path='model')
    if is_qat_config(cfg):
        qcfg = {k: v for k, v in cfg['quantization'].items() if k != 'float_checkpoint'}
        model = prepare_qat(model, qcfg)
        if checkpoint is not None:
            source = f'{origin} {os.fspath(checkpoint)}' if origin else os.fspath(checkpoint)
            loaded = read_checkpoint(checkpoint, 'cpu')
            model.load_state_dict(state_dict_of(loaded, source))
            codec_size = (cfg.get('codec') or {}).get('input_size')
            check_input_size(source, trained_input_size(loaded), tuple(codec_size) if codec_size else None)
    elif checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True, origin=origin)
    return model.cpu().eval()


def prepare_for_training(model: nn.Module, cfg: Mapping[str, Any]) -> nn.Module:
    """``model`` prepared for QAT when ``cfg.quantization.mode == 'qat'`` (see
    :func:`models.qat.prepare_qat`), else ``model`` itself."""
    if not is_qat_config(cfg):
        return model
    logger.info('quantisation-aware training: %s', dict(cfg['quantization']))
    return prepare_qat(model, cfg['quantization'])
