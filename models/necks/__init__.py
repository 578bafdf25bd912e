"""Necks: each module registers its classes in utils.registry.MODELS."""
from models.necks import global_average_pooling  # noqa: F401
