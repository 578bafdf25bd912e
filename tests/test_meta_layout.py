"""One meta layout for both input pipelines, and the MMPose compatibility arguments that are accepted
but ignored: setting them to anything but their default warns (project logger)."""
from __future__ import annotations

import numpy as np
import pytest

from datasets.transforms import GenerateTarget, PackPoseInputs
from datasets.transforms.formatting import META_KEYS, MMPOSE_META_KEYS, instance_meta, pack_meta

RLE = dict(type='RegressionLabel', input_size=(192, 192))



def test_pack_meta_orders_and_checks_the_keys():
    values = {k: i for i, k in enumerate(reversed(META_KEYS))}
    assert list(pack_meta(values)) == list(META_KEYS)
    with pytest.raises(KeyError, match=r"missing \['ori_shape'\], unexpected \['extra'\]"):
        pack_meta({**{k: 0 for k in META_KEYS if k != 'ori_shape'}, 'extra': 1})


def test_instance_meta_defaults_and_dtypes():
    meta = instance_meta({'flip_indices': [1, 0], 'category_id': np.array([[3]]), 'area': [12.5]})
    assert meta == {'img_id': -1, 'id': -1, 'category_id': 3, 'img_path': '', 'dataset_name': '',
                    'bbox_score': 1.0, 'area': 12.5, 'flip_indices': meta['flip_indices']}
    assert meta['flip_indices'].dtype == np.int64 and meta['area'].dtype == np.float32


def test_ignored_compatibility_arguments_warn_only_when_set(project_log):
    PackPoseInputs()
    PackPoseInputs(meta_keys=MMPOSE_META_KEYS)  # MMPose's default spelled out
    GenerateTarget(encoder=RLE)
    assert not project_log.records
    PackPoseInputs(meta_keys=('id', 'img_id'))
    PackPoseInputs(pack_transformed=True)
    GenerateTarget(encoder=RLE, target_type='keypoint_label')
    messages = [r.getMessage() for r in project_log.records]
    assert len(messages) == 3
    assert 'meta_keys is ignored' in messages[0] and 'pack_transformed=True is ignored' in messages[1]
    assert "target_type='keypoint_label' is ignored" in messages[2]
    with pytest.raises(NotImplementedError, match='multilevel'):
        GenerateTarget(encoder=RLE, multilevel=True)


def test_generate_target_exposes_its_codecs():
    assert type(GenerateTarget(encoder=RLE).encoder).__name__ == 'RegressionLabel'
    both = GenerateTarget(encoder=[RLE, dict(type='SimCCLabel', input_size=(192, 192))]).encoder
    assert [type(c).__name__ for c in both] == ['RegressionLabel', 'SimCCLabel']
