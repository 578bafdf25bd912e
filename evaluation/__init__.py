"""Metrics, registered in utils.registry.METRICS (CocoMetric, PCKAccuracy, AUC, EPE), and the
evaluation loop ``evaluate_model`` used by val.py and train.py."""
from evaluation.coco_metric import CocoMetric
from evaluation.evaluate import evaluate_model
from evaluation.keypoint_metrics import AUC, EPE, PCKAccuracy

__all__ = ['AUC', 'CocoMetric', 'EPE', 'PCKAccuracy', 'evaluate_model']
