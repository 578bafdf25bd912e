"""The device pipeline's profile (benchmarks/bench_pipeline.py --batched, the GPU check): every stage
timed, and ATen operations per batch that do not grow with the batch beyond the JPEG decode (one
operation per image on the CPU, one call for all on CUDA)."""
from __future__ import annotations

from datasets import build_dataset
from datasets.batched import DeviceTopdownPipeline, RawSampleDataset, collate_raw, dataset_recipes
from datasets.batched.profile import STAGES, count_ops, profile_pipeline
from tests.conftest import coco_cfg, needs_coco

CODEC = dict(type='RegressionLabel', input_size=(192, 192))
PIPELINE = [dict(type='LoadImage'), dict(type='GetBBoxCenterScale'), dict(type='RandomFlip'),
            dict(type='RandomHalfBody'), dict(type='RandomBBoxTransform'),
            dict(type='TopdownAffine', input_size=(192, 192)), dict(type='YOLOXHSVRandomAug'),
            dict(type='Albumentation', transforms=[dict(type='CoarseDropout', max_holes=1, max_height=0.4,
                                                        max_width=0.4, min_holes=1, min_height=0.2,
                                                        min_width=0.2, p=1.0)]),
            dict(type='GenerateTarget', encoder=CODEC), dict(type='PackPoseInputs')]


@needs_coco
def test_profile_times_every_stage_and_counts_operations():
    cfg = coco_cfg(pipeline=PIPELINE)
    recipes = dataset_recipes(cfg)
    raw_ds = RawSampleDataset(build_dataset(cfg), recipes)
    pipeline = DeviceTopdownPipeline(recipes, 'cpu')

    def raw(n):
        return collate_raw([raw_ds[(i % len(raw_ds), i)] for i in range(n)])
    figures = profile_pipeline(pipeline, raw(8), repeats=1)
    assert set(figures['ms']) == {*STAGES, 'total'} and all(v >= 0 for v in figures['ms'].values())
    assert figures['batch'] == figures['jpegs'] == 8 and figures['decode_images_per_s'] > 0
    ops = {n: count_ops(pipeline, raw(n)).ops for n in (8, 16, 32)}
    assert ops[8] == figures['aten_ops']
    # the sample's 4 images give 4 warp groups at every batch size: only the decode grows
    assert ops[16] - ops[8] == 8 and ops[32] - ops[16] == 16
