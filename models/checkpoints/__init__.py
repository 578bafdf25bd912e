"""Checkpoints: reading and writing files safely (``files``, ``unpickler``), their formats and the MMPose
parameter names of the model families that differ (``naming``), loading weights into a model with
shape-mismatch hints (``weights``), and the known checkpoints by name with their download (``model_zoo``).

Loading never runs code from a file: ``torch.load(weights_only=True)``, else a restricted unpickler that
puts inert placeholders in place of the classes a checkpoint names.
"""
from models.checkpoints.files import (
    CHECKPOINT_MARKER,
    CheckpointError,
    read_checkpoint,
    save_checkpoint,
    state_dict_of,
)
from models.checkpoints.model_zoo import (
    MODEL_ZOO,
    ModelZooError,
    add_checkpoint_argument,
    resolve_checkpoint,
    run_checkpoint,
    zoo_config,
)
from models.checkpoints.naming import convert_checkpoint, convert_state_dict, detect_format, detect_naming
from models.checkpoints.weights import LoadReport, load_checkpoint, load_pretrained, pretrained_cfg

__all__ = ['CHECKPOINT_MARKER', 'CheckpointError', 'read_checkpoint', 'save_checkpoint', 'state_dict_of',
           'MODEL_ZOO', 'ModelZooError', 'add_checkpoint_argument', 'resolve_checkpoint', 'run_checkpoint',
           'zoo_config', 'convert_checkpoint', 'convert_state_dict', 'detect_format', 'detect_naming',
           'LoadReport', 'load_checkpoint', 'load_pretrained', 'pretrained_cfg']
