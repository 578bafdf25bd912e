"""Detection: RTMDet (CSPNeXt backbone in models/backbones, PAFPN neck, SepBN head, post-processing).

Importing this package registers its classes in utils.registry.MODELS.
"""
from models.detection import cspnext_pafpn, rtmdet, rtmdet_head  # noqa: F401  (registration)
