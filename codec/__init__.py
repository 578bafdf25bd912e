"""Keypoint encodings: each module registers its codec in utils.registry.CODECS."""
