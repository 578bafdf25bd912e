"""Backbones: each module registers its classes in utils.registry.MODELS."""
from models.backbones import cspnext, mobilenet_v2, shufflenet_v2  # noqa: F401  (registration)
