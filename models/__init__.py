"""Networks: backbones, necks, heads, losses, the top-down estimator and the RTMDet detector.

Importing this package registers every model class in ``utils.registry.MODELS``.
"""
from models import backbones, detection, heads, losses, necks  # noqa: F401  (registration)
