"""The training engine: one training step, its device-side statistics, the epoch loop and run setup.

Above models/, optim/ and datasets/; used by train.py, benchmarks/ and the tests, so that all of them run
the same step."""
from engine.batch import prepare_batch
from engine.loss_model import LossModel, estimator_of
from engine.rank_stop import RunStopped, stop_run
from engine.step_stats import NonFiniteLossError, StepStats
from engine.train_step import total_loss, train_step

__all__ = ['prepare_batch', 'LossModel', 'estimator_of', 'RunStopped', 'stop_run', 'NonFiniteLossError',
           'StepStats', 'total_loss', 'train_step']
