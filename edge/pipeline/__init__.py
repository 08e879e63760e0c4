"""The pipeline between drivers and the store: scale/offset, deadband, user transforms."""

from edge.pipeline.pipeline import Pipeline
from edge.pipeline.transforms import TransformError, TransformSet, load_transforms

__all__ = ["Pipeline", "TransformError", "TransformSet", "load_transforms"]
