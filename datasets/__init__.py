"""Datasets, samplers and collate; transforms live in datasets.transforms."""
