"""Top-down augmentation and packing transforms, registered in utils.registry.TRANSFORMS."""
