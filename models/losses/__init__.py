"""Losses: each module registers its classes in utils.registry.MODELS."""
