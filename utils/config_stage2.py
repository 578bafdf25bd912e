"""The training's stage 2 as configs give it: ``train_dataloader.dataset.pipeline_stage2``, used for the last
``stage2_num_epochs`` epochs. Both run when :meth:`utils.config.Config.fromfile` loads a config:

- :func:`read_pipeline_switch_hook` reads MMPose's form, ``custom_hooks = [dict(
  type='mmdet.PipelineSwitchHook', switch_epoch=E, switch_pipeline=P)]``, as ``stage2_num_epochs =
  train_cfg.max_epochs - E`` and ``pipeline_stage2 = P`` (as ``optim/ema.py`` reads an ``EMAHook``), so a
  config in either form trains the same;
- :func:`stage2_left_behind` words the warning for a stage-1 pipeline changed (by a child file or an
  override) after the stage-2 one was set, which would otherwise take over, unchanged, for the last epochs.
"""
from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from utils.cfg_options import NEW_KEY_PREFIX, CliValue
from utils.config_dict import ConfigError

STAGE1 = ('train_dataloader', 'dataset', 'pipeline')
STAGE2 = ('train_dataloader', 'dataset', 'pipeline_stage2')
HOOKS = ('custom_hooks',)
TRACKED = (STAGE1, STAGE2, HOOKS)  # keys whose setting file :func:`utils.config._load` records
STAGE_VARIABLES = {STAGE1: 'train_pipeline', STAGE2: 'train_pipeline_stage2'}  # what recipes build them from
SWITCH_HOOKS = ('PipelineSwitchHook', 'mmdet.PipelineSwitchHook')
SetBy = dict[tuple[str, ...], tuple[int, Path]]  # key -> (order in which its file was resolved, that file)


def holds(values: Any, key: tuple[str, ...]) -> bool:
    """Whether ``values`` (a file's own values: maybe a dict holding part of an entry) hold dotted ``key``."""
    for part in key:
        if not isinstance(values, Mapping) or part not in values:
            return False
        values = values[part]
    return True


def _get(values: Any, key: tuple[str, ...]) -> Any:
    for part in key:
        values = values.get(part) if isinstance(values, Mapping) else None
    return values


def read_pipeline_switch_hook(cfg: MutableMapping[str, Any]) -> bool:
    """Turn a ``PipelineSwitchHook`` in ``custom_hooks`` into ``stage2_num_epochs`` and the pipeline owner's
    ``pipeline_stage2`` (a RepeatDataset passes to the dataset it repeats), in place; True if there was one.

    Raises:
        ConfigError: more than one such hook, a ``switch_epoch`` outside ``0..train_cfg.max_epochs``, no
            training dataset, or ``stage2_num_epochs`` / ``pipeline_stage2`` set otherwise than the hook.
    """
    hooks = list(cfg.get('custom_hooks') or [])
    switches = [h for h in hooks if isinstance(h, Mapping) and h.get('type') in SWITCH_HOOKS]
    if not switches:
        return False
    if len(switches) > 1:
        raise ConfigError(f'custom_hooks has {len(switches)} PipelineSwitchHook entries; one at most')
    hook, where = switches[0], 'custom_hooks PipelineSwitchHook'
    max_epochs = _get(cfg, ('train_cfg', 'max_epochs'))
    epoch = hook.get('switch_epoch')
    if not isinstance(max_epochs, int) or not isinstance(epoch, int) or not 0 <= epoch <= max_epochs:
        raise ConfigError(f'{where}: switch_epoch = {epoch!r} must be a whole number from 0 to '
                          f'train_cfg.max_epochs = {max_epochs!r}')
    if 'switch_pipeline' not in hook:
        raise ConfigError(f'{where} has no switch_pipeline')
    dataset, path = _get(cfg, ('train_dataloader', 'dataset')), 'train_dataloader.dataset'
    if not isinstance(dataset, MutableMapping):
        raise ConfigError(f'{where}: the config has no {path} to switch the pipeline of')
    while dataset.get('type') == 'RepeatDataset':
        dataset, path = dataset['dataset'], f'{path}.dataset'
    pipeline, epochs = hook['switch_pipeline'], max_epochs - epoch
    if dataset.get('pipeline_stage2') not in (None, pipeline) or cfg.get('stage2_num_epochs') not in (
            None, 0, epochs):
        raise ConfigError(f'{where} (switch_epoch={epoch}) and stage2_num_epochs = '
                          f'{cfg.get("stage2_num_epochs")!r} / {path}.pipeline_stage2 both set the stage-2 '
                          'pipeline, differently; keep one')
    dataset['pipeline_stage2'] = pipeline
    cfg['stage2_num_epochs'] = epochs
    cfg['custom_hooks'] = [h for h in hooks if h is not hook]
    return True


def _overrides(dotted: str, raw: Any, key: tuple[str, ...]) -> bool:
    """Whether the override ``dotted`` (with its value) sets or changes the entry at ``key``, or the variable
    recipes build it from (``custom_hooks`` counts as stage 2: the PipelineSwitchHook)."""
    value = raw.value if isinstance(raw, CliValue) else raw
    path = tuple(dotted.removeprefix(NEW_KEY_PREFIX).split('.'))
    if path[0] == STAGE_VARIABLES[key] or (key == STAGE2 and path[0] == HOOKS[0]):
        return True
    if path == key[:len(path)]:  # a dict above the entry: does it hold the entry?
        return holds(value, key[len(path):])
    return path[:len(key)] == key


def stage2_left_behind(cfg: Mapping[str, Any], set_by: SetBy, options: Mapping[str, Any]) -> str | None:
    """The warning for a config whose stage-1 pipeline was changed by an override in ``options`` or by a
    file resolved after the one that set the stage-2 pipeline (``set_by``); None when stage 2 is unused,
    was set as well, or was set last."""
    epochs = cfg.get('stage2_num_epochs')
    if not _get(cfg, STAGE2) or not isinstance(epochs, int) or epochs <= 0:
        return None
    if any(_overrides(k, v, STAGE2) for k, v in options.items()):
        return None
    touched = [k for k, v in options.items() if _overrides(k, v, STAGE1)]
    if touched:
        where = f'--cfg-options {touched[0]}'
    elif STAGE1 in set_by and set_by[STAGE1][0] > set_by.get(STAGE2, (0,))[0]:
        where = str(set_by[STAGE1][1])
    else:
        return None
    stage1, stage2 = ('.'.join(k) for k in (STAGE1, STAGE2))
    origin = set_by.get(STAGE2, (0, 'a base file'))[1]
    epochs_text = f'{epochs} epoch' + ('s' if epochs != 1 else '')
    return (f'{where} changes {stage1} but not {stage2} (set in {origin}): the last {epochs_text} '
            f'(stage2_num_epochs) still switch to that stage-2 pipeline; set {stage2} (or the '
            f'{STAGE_VARIABLES[STAGE2]} it is built from) too, or stage2_num_epochs=0')
