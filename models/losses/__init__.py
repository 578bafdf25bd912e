"""Losses: each module registers its classes in utils.registry.MODELS."""
from models.losses import classification_loss, heatmap_loss, regression_loss  # noqa: F401  (registration)
