"""Batched, device-side versions of the top-down training pipeline's steps (tensors on any device).

The device-side input pipeline: loader workers read file bytes and annotations and draw every
sample's augmentation parameters; per batch, decoding, cropping, photometric augmentation
(``photometric``) and codec targets run on the training device (``DeviceTopdownPipeline``)."""
from datasets.batched.device_loader import DeviceBatchLoader
from datasets.batched.host_sample import RawSampleDataset
from datasets.batched.input_pipeline import INPUT_PIPELINES, build_train_loader, choose_input_pipeline
from datasets.batched.pipeline import DeviceTopdownPipeline
from datasets.batched.raw_batch import collate_raw
from datasets.batched.recipe import BatchedRecipe, UnsupportedRecipeError, dataset_recipes, parse_recipe

__all__ = ['INPUT_PIPELINES', 'BatchedRecipe', 'DeviceBatchLoader', 'DeviceTopdownPipeline',
           'RawSampleDataset', 'UnsupportedRecipeError', 'build_train_loader', 'choose_input_pipeline',
           'collate_raw', 'dataset_recipes', 'parse_recipe']
