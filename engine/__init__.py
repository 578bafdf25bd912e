"""The training engine, above models/, optim/, datasets/, evaluation/ and visualization/; used by train.py,
benchmarks/ and the tests, so that all of them run the same step.

- ``step``: one iteration (``prepare_batch``, ``LossModel``, ``train_step``, ``StepStats``);
- ``loop``: one epoch (``train_one_epoch``) and stopping every rank together (``RunStopped``);
- ``run``: setting a run up (checks, AMP, cuDNN, ``build_train_model``) and its checkpoint state;
- ``run_dir``: the run's work dir (names that never collide), what ``--resume`` continues from, a finished
  run, and the command that resumes an interrupted one;
- ``report``: the console, log and work-dir reporting (``RunReport``); ``record``: results.csv and
  scalars.json.
"""
from engine.loop import RunStopped, train_one_epoch, watch_for_peer_stop
from engine.record import RunRecord, read_results, read_scalars, run_series, summary_table
from engine.report import RunReport, TrainWindow
from engine.run import (
    build_train_model,
    check_data_paths,
    check_data_sizes,
    check_training_settings,
    checkpoint_payload,
    enable_amp,
    pin_loader_memory,
    refuse_overwrite,
    restore,
    set_cudnn_benchmark,
)
from engine.run_dir import (
    finished_message,
    latest_run,
    new_work_dir,
    read_resume_checkpoint,
    resolve_run,
    resume_command,
)
from engine.step import LossModel, NonFiniteLossError, StepStats, prepare_batch, train_step

__all__ = ['RunStopped', 'train_one_epoch', 'watch_for_peer_stop', 'RunRecord', 'read_results',
           'read_scalars', 'run_series', 'summary_table', 'RunReport', 'TrainWindow', 'build_train_model',
           'check_data_paths', 'check_data_sizes', 'check_training_settings', 'checkpoint_payload',
           'enable_amp', 'pin_loader_memory', 'refuse_overwrite', 'restore', 'set_cudnn_benchmark',
           'LossModel', 'NonFiniteLossError', 'StepStats', 'prepare_batch', 'train_step', 'finished_message',
           'latest_run', 'new_work_dir', 'read_resume_checkpoint', 'resolve_run', 'resume_command']
