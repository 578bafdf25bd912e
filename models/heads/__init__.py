"""Heads: each module registers its classes in utils.registry.MODELS."""
from models.heads import heatmap_head, regression_head, rle_head, simcc_head  # noqa: F401  (registration)
