"""Backbones: each module registers its classes in utils.registry.MODELS."""
from models.backbones import mobilenet_v2  # noqa: F401
from models.backbones import cspnext  # noqa: F401
