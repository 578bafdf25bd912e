"""Inputs of the inference API: images (a file path or a BGR uint8 array) and configs (a path or a dict)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from datasets.image_io import ImageLoadError, decode_image, read_file_bytes
from models.checkpoints.model_zoo import zoo_config
from utils.config import Config, parse_cfg_options
from utils.errors import DataError

ImageLike = str | os.PathLike | np.ndarray


class ImageReadError(DataError):
    """An image file that is missing or cannot be decoded, or an array that is not an image."""


def read_image(img: ImageLike) -> np.ndarray:
    """Return ``img`` as an (H, W, 3) BGR uint8 array.

    Args:
        img: a path to an image file (decoded with OpenCV, colour) or an (H, W, 3) uint8 BGR array
            (returned as is).

    Raises:
        ImageReadError: naming the file (missing or undecodable) or describing the bad array.
    """
    if isinstance(img, np.ndarray):
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ImageReadError(f'expected an (H, W, 3) uint8 BGR image array, got {img.dtype} '
                                 f'array of shape {img.shape}')
        return img
    path = Path(img)
    if not path.is_file():
        raise ImageReadError(f'image file not found: {str(path)!r}')
    try:
        return decode_image(read_file_bytes(str(path)), repr(str(path)), cv2.IMREAD_COLOR)
    except ImageLoadError as err:
        raise ImageReadError(str(err)) from None


def as_config(config: str | os.PathLike | Mapping, what: str = 'config',
              cfg_options: list[str] | None = None) -> Config:
    """A loaded :class:`Config` from a config file path, a model-zoo name (its config), a Config, or a
    plain dict, with ``--cfg-options`` items applied (to a file as ``utils.config.load_config`` does:
    entries built from an overridden variable follow it; to a Config in place).

    Raises:
        FileNotFoundError: naming the missing file (``what`` says which config it is).
        ConfigError: an override that does not fit.
    """
    options = parse_cfg_options(cfg_options)
    if isinstance(config, Mapping):
        cfg = config if isinstance(config, Config) else Config(config)
        cfg.merge_from_options(options)
        return cfg
    if not os.path.exists(config) and zoo_config(os.fspath(config)) is not None:
        config = zoo_config(os.fspath(config))
    if not os.path.exists(config):
        raise FileNotFoundError(f'{what} file not found: {str(config)!r}')
    return Config.fromfile(config, options)
