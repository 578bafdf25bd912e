"""Backbones: each module registers its classes in utils.registry.MODELS."""
from models.backbones import mobilenet_v2  # noqa: F401
