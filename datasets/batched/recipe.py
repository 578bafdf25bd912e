"""BatchedRecipe: a top-down training pipeline config read as the steps the batched pipeline runs.

The device-side input pipeline runs the steps of the per-sample recipe in their fixed order:
``LoadImage``, ``GetBBoxCenterScale``, optional ``RandomFlip`` / ``RandomHalfBody`` /
``RandomBBoxTransform``, ``TopdownAffine``, photometric augmentations, ``GenerateTarget`` with a
codec it can encode on the device, ``PackPoseInputs``. Anything else raises
:class:`UnsupportedRecipeError` naming the step, so that the caller can fall back to the
per-sample pipeline.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datasets.batched.photometric import (
    BatchedPhotometric,
    UnsupportedTransformError,
    build_batched_photometric,
)
from datasets.batched.targets import unbatched_reason
from datasets.transforms import (
    GenerateTarget,
    GetBBoxCenterScale,
    RandomBBoxTransform,
    RandomFlip,
    RandomHalfBody,
    TopdownAffine,
)
from utils.registry import TRANSFORMS

# Order of the steps; photometric ones may repeat, the optional geometric ones appear at most once.
_STAGES = {'LoadImage': 0, 'GetBBoxCenterScale': 1, 'RandomFlip': 2, 'RandomHalfBody': 3,
           'RandomBBoxTransform': 4, 'TopdownAffine': 5, 'YOLOXHSVRandomAug': 6, 'PhotometricDistortion': 6,
           'Albumentation': 6, 'GenerateTarget': 7, 'PackPoseInputs': 8}
_ORDER = ('LoadImage -> GetBBoxCenterScale -> RandomFlip -> RandomHalfBody -> RandomBBoxTransform -> '
          'TopdownAffine -> photometric steps -> GenerateTarget -> PackPoseInputs')
_REQUIRED = ('LoadImage', 'GetBBoxCenterScale', 'TopdownAffine', 'GenerateTarget', 'PackPoseInputs')
# Transforms that a wrapped dataset (e.g. AIC inside a CombinedDataset) may run on its own annotations.
ANNOTATION_TRANSFORMS = ('KeypointConverter',)


class UnsupportedRecipeError(ValueError):
    """A training pipeline config the batched pipeline cannot run; the message names the config path
    and the step."""


def _photometric(cfg: Mapping[str, Any], where: str,
                 affine: TopdownAffine | None) -> list[BatchedPhotometric]:
    if affine is None:
        raise UnsupportedRecipeError(f'{where} {cfg["type"]}: the batched pipeline augments crops, after '
                                     'TopdownAffine')
    try:
        return build_batched_photometric(dict(cfg), image_size=affine.input_size)
    except UnsupportedTransformError as err:
        raise UnsupportedRecipeError(f'{where} {cfg["type"]}: {err}') from err


@dataclass
class BatchedRecipe:
    """The steps of one training pipeline, built from its config.

    Attributes:
        bbox_padding: ``GetBBoxCenterScale`` padding (box size -> crop scale).
        flip, half_body, bbox_transform: the per-sample transforms whose random draws are reused
            (their ``draw_direction`` / ``select`` / ``get_params``), or ``None`` when absent.
        affine: the ``TopdownAffine`` step (``input_size`` (w, h), ``use_udp``).
        photometric: batched photometric augmentations in pipeline order
            (``datasets.batched.photometric``: ``draw(rng)`` per sample, ``apply(images, params)``).
        target: the ``GenerateTarget`` step (its codec is encoded on the device).
    """

    bbox_padding: float
    affine: TopdownAffine
    target: GenerateTarget
    flip: RandomFlip | None = None
    half_body: RandomHalfBody | None = None
    bbox_transform: RandomBBoxTransform | None = None
    photometric: list[BatchedPhotometric] = field(default_factory=list)

    @property
    def codec(self) -> Any:
        """The codec of ``GenerateTarget``."""
        return self.target.encoder


def _check_load(cfg: Mapping[str, Any], where: str) -> None:
    if cfg.get('color_type', 'color') != 'color' or cfg.get('to_float32', False):
        raise UnsupportedRecipeError(f"{where} LoadImage: only color_type='color' without to_float32 "
                                        'is batched')


def _check_target(step: GenerateTarget, where: str) -> None:
    if isinstance(step.encoder, list):
        raise UnsupportedRecipeError(f'{where} GenerateTarget: a list of encoders is not batched')
    reason = unbatched_reason(step.encoder)
    if reason is not None:
        raise UnsupportedRecipeError(f'{where} GenerateTarget: {reason}')


def parse_recipe(pipeline: Sequence[Mapping[str, Any]], where: str = 'pipeline') -> BatchedRecipe:
    """Read a training pipeline config (a list of transform dicts) as a :class:`BatchedRecipe`.

    Raises:
        UnsupportedRecipeError: naming the first step (``where[i] Type``) the batched pipeline
            cannot run, or the missing / misplaced one.
    """
    steps: dict[str, Any] = {}
    photometric: list[BatchedPhotometric] = []
    last = -1
    for i, cfg in enumerate(pipeline):
        if not isinstance(cfg, Mapping) or 'type' not in cfg:
            raise UnsupportedRecipeError(f'{where}[{i}]: only transform config dicts are batched, '
                                            f'got {cfg!r:.60}')
        name = cfg['type']
        if name not in _STAGES:
            raise UnsupportedRecipeError(f'{where}[{i}] {name}: not supported by the batched pipeline')
        stage = _STAGES[name]
        if stage < last or (stage == last and stage != 6):
            raise UnsupportedRecipeError(f'{where}[{i}] {name}: out of the order {_ORDER} that the '
                                            'batched pipeline runs')
        last = stage
        if stage == 6:
            photometric += _photometric(cfg, f'{where}[{i}]', steps.get('TopdownAffine'))
        elif name == 'LoadImage':
            _check_load(cfg, f'{where}[{i}]')
            steps[name] = cfg
        else:
            steps[name] = TRANSFORMS.build(dict(cfg), cfg_path=f'{where}[{i}]')
    missing = [n for n in _REQUIRED if n not in steps]
    if missing:
        raise UnsupportedRecipeError(f'{where}: the batched pipeline needs {", ".join(missing)}')
    _check_target(steps['GenerateTarget'], where)
    center_scale: GetBBoxCenterScale = steps['GetBBoxCenterScale']
    return BatchedRecipe(bbox_padding=float(center_scale.padding), affine=steps['TopdownAffine'],
                         target=steps['GenerateTarget'], flip=steps.get('RandomFlip'),
                         half_body=steps.get('RandomHalfBody'),
                         bbox_transform=steps.get('RandomBBoxTransform'), photometric=photometric)


def _check_wrapped(cfg: Mapping[str, Any], where: str) -> None:
    """Datasets inside a wrapper may only run annotation transforms (the wrapper's pipeline crops)."""
    for i, step in enumerate(cfg.get('pipeline') or ()):
        name = step.get('type') if isinstance(step, Mapping) else type(step).__name__
        if name not in ANNOTATION_TRANSFORMS:
            raise UnsupportedRecipeError(f'{where}.pipeline[{i}] {name}: a wrapped dataset may only run '
                                            f'{", ".join(ANNOTATION_TRANSFORMS)} in the batched pipeline')
    for key in ('dataset', 'datasets'):
        inner = cfg.get(key)
        for j, sub in enumerate(inner if isinstance(inner, (list, tuple)) else [inner] if inner else []):
            _check_wrapped(sub, f'{where}.{key}' + (f'[{j}]' if key == 'datasets' else ''))


def dataset_recipes(cfg: Mapping[str, Any], where: str = 'dataset') -> list[BatchedRecipe]:
    """The recipes of a training dataset config: ``[stage 1]`` or ``[stage 1, stage 2]``.

    The pipeline is that of the outermost dataset owning one (a ``RepeatDataset`` passes to the
    dataset it repeats); datasets it wraps may only hold annotation transforms.

    Raises:
        UnsupportedRecipeError: naming the config path and step that cannot be batched.
    """
    if cfg.get('type') == 'RepeatDataset':
        return dataset_recipes(cfg['dataset'], f'{where}.dataset')
    recipes = [parse_recipe(cfg.get('pipeline') or (), f'{where}.pipeline')]
    if cfg.get('pipeline_stage2'):
        recipes.append(parse_recipe(cfg['pipeline_stage2'], f'{where}.pipeline_stage2'))
    inner = cfg.get('datasets') or ()
    for j, sub in enumerate(inner):
        _check_wrapped(sub, f'{where}.datasets[{j}]')
    return recipes
