"""Data layer: reading images, dataset layouts (MVTec AD, BTAD, folder), ROIs, splits and the `Dataset`."""

from grdnet.data.dataset import ImageDataset
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
from grdnet.data.layouts import FOLDER_TEST_FRACTION, DatasetIndex, Sample, index_dataset

__all__ = [
    "FOLDER_TEST_FRACTION",
    "IMAGE_EXTENSIONS",
    "DatasetIndex",
    "ImageDataset",
    "Sample",
    "UnreadableImageError",
    "index_dataset",
    "is_image_file",
    "probe_image",
    "read_image",
    "read_image_with_valid",
    "read_mask",
    "resize_image",
    "resize_mask",
]
