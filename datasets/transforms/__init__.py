"""Top-down augmentation and packing transforms, registered in utils.registry.TRANSFORMS."""
from datasets.image_io import ImageLoadError
from datasets.transforms.albumentation import Albumentation
from datasets.transforms.base import BaseTransform, Compose
from datasets.transforms.converting import KeypointConverter
from datasets.transforms.formatting import PackPoseInputs
from datasets.transforms.geometric import GetBBoxCenterScale, RandomBBoxTransform, RandomFlip, RandomHalfBody
from datasets.transforms.loading import LoadImage
from datasets.transforms.photometric import PhotometricDistortion, YOLOXHSVRandomAug
from datasets.transforms.target import GenerateTarget
from datasets.transforms.topdown_affine import TopdownAffine

__all__ = [
    'Albumentation', 'BaseTransform', 'Compose', 'GenerateTarget', 'GetBBoxCenterScale', 'ImageLoadError',
    'KeypointConverter', 'LoadImage', 'PackPoseInputs', 'PhotometricDistortion',
    'RandomBBoxTransform', 'RandomFlip', 'RandomHalfBody', 'TopdownAffine', 'YOLOXHSVRandomAug',
]
