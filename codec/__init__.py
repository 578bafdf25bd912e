"""Keypoint encodings (codecs): ``encode`` builds training targets, ``decode`` turns predictions into
keypoints. Each module registers its codec in :data:`utils.registry.CODECS`."""
from __future__ import annotations

from typing import Any

from codec.base import BaseKeypointCodec
from codec.integral_regression_label import IntegralRegressionLabel
from codec.msra_heatmap import MSRAHeatmap
from codec.regression_label import RegressionLabel
from codec.simcc_label import SimCCLabel
from codec.udp_heatmap import UDPHeatmap
from utils.registry import CODECS

__all__ = ['BaseKeypointCodec', 'IntegralRegressionLabel', 'MSRAHeatmap', 'RegressionLabel', 'SimCCLabel',
           'UDPHeatmap', 'build_codec']


def build_codec(cfg: dict[str, Any]) -> BaseKeypointCodec:
    """Build a codec from a config dict such as ``dict(type='SimCCLabel', input_size=(192, 256))``."""
    return CODECS.build(cfg, cfg_path='codec')
