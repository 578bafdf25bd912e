"""Networks: backbones, necks, heads, losses, the top-down estimator and the RTMDet detector.

Importing this package registers every model class in ``utils.registry.MODELS``.
"""
from models import backbones, detection, heads, losses, necks  # noqa: F401  (registration)
from models.data_preprocessor import PoseDataPreprocessor  # noqa: F401  (registration)
from models.pose_estimator import TopdownPoseEstimator, build_pose_estimator  # noqa: F401
