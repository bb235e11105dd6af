"""Data layer: reading images, dataset layouts (MVTec AD, BTAD, folder), ROIs, checks, splits, the `Dataset` and
preloading into memory."""

from grdnet.data.dataset import ImageDataset
from grdnet.data.discovery import FOLDER_TEST_FRACTION
from grdnet.data.index import index_dataset
from grdnet.data.io import (
    IMAGE_EXTENSIONS,
    UnreadableImageError,
    is_image_file,
    probe_image,
    read_image,
    read_image_with_valid,
    read_mask,
    resize_image,
    resize_mask,
)
from grdnet.data.preload import load_tensors
from grdnet.data.samples import DatasetIndex, Sample

__all__ = [
    "FOLDER_TEST_FRACTION",
    "IMAGE_EXTENSIONS",
    "DatasetIndex",
    "ImageDataset",
    "Sample",
    "UnreadableImageError",
    "index_dataset",
    "is_image_file",
    "load_tensors",
    "probe_image",
    "read_image",
    "read_image_with_valid",
    "read_mask",
    "resize_image",
    "resize_mask",
]
