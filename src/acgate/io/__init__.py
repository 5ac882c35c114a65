"""Parquet I/O: versioned schemas, atomic writes, dataset loaders, poisoning.

This adapter is the only part of acgate that imports pyarrow (and Pillow for images);
pandas is imported lazily by the result readers and writers.
"""

from acgate.io.activations import (
    ActivationTable,
    ActivationWriter,
    iter_activation_batches,
    read_activations,
    write_activations,
)
from acgate.io.atomic import atomic_directory, atomic_write_path
from acgate.io.datasets import (
    ImageDataset,
    TextDataset,
    dataset_fingerprint,
    read_dataset,
    read_image_dataset,
    read_text_dataset,
    write_image_dataset,
    write_text_dataset,
)
from acgate.io.digest import file_sha256
from acgate.io.loaders import (
    default_cache_dir,
    load_digits_dataset,
    load_fashion_mnist,
    load_mnist,
    load_rotten_tomatoes,
)
from acgate.io.output import output_folder
from acgate.io.poison import (
    TriggerSpec,
    apply_trigger,
    poison_image_dataset,
    poison_text_dataset,
)
from acgate.io.results import (
    read_classes,
    read_flagged,
    read_report,
    read_samples,
    write_result,
)
from acgate.io.schema import SCHEMA_KEY, SCHEMA_VERSIONS

__all__ = [
    "file_sha256",
    "output_folder",
    "SCHEMA_KEY",
    "SCHEMA_VERSIONS",
    "ActivationTable",
    "ActivationWriter",
    "ImageDataset",
    "TextDataset",
    "TriggerSpec",
    "apply_trigger",
    "atomic_directory",
    "atomic_write_path",
    "dataset_fingerprint",
    "default_cache_dir",
    "iter_activation_batches",
    "load_digits_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "load_rotten_tomatoes",
    "poison_image_dataset",
    "poison_text_dataset",
    "read_activations",
    "read_classes",
    "read_dataset",
    "read_flagged",
    "read_image_dataset",
    "read_report",
    "read_samples",
    "read_text_dataset",
    "write_activations",
    "write_image_dataset",
    "write_result",
    "write_text_dataset",
]
