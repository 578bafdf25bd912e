"""Python inference API: pose models on person boxes, and RTMDet detectors."""
from apis.detector import inference_detector, init_detector, select_boxes  # noqa: F401
from apis.pose import inference_topdown, init_model  # noqa: F401
