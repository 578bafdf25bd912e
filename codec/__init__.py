"""Keypoint encodings (codecs): ``encode`` builds training targets, ``decode`` turns predictions into
keypoints. Each module registers its codec in :data:`utils.registry.CODECS`."""
from __future__ import annotations

from typing import Any

from codec.base import BaseKeypointCodec
from codec.regression_label import RegressionLabel
from codec.simcc_label import SimCCLabel
from utils.registry import CODECS

__all__ = ['BaseKeypointCodec', 'RegressionLabel', 'SimCCLabel', 'build_codec']


def build_codec(cfg: dict[str, Any]) -> BaseKeypointCodec:
    """Build a codec from a config dict such as ``dict(type='SimCCLabel', input_size=(192, 256))``."""
    return CODECS.build(cfg, cfg_path='codec')
