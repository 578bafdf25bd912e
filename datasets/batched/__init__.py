"""Batched, device-side versions of the top-down training pipeline's steps (tensors on any device)."""
