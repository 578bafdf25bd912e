"""Metrics, registered in utils.registry.METRICS: COCO keypoint AP (CocoMetric), PCKAccuracy, AUC, EPE."""
from evaluation.coco_metric import CocoMetric
from evaluation.keypoint_metrics import AUC, EPE, PCKAccuracy

__all__ = ['AUC', 'CocoMetric', 'EPE', 'PCKAccuracy']
