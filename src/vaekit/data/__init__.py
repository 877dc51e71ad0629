"""Where examples come from: named data sets, user files and folders, as train/valid/test splits.

from vaekit.data import load_dataset
ds = load_dataset("digits")  # or mnist, fashion-mnist, cifar10, npz:PATH, folder:PATH
ds.train.x.shape, ds.levels, ds.num_classes
"""

from vaekit.data.base import DataSet, Split
from vaekit.data.registry import available_datasets, load_configured, load_dataset, register

__all__ = ["DataSet", "Split", "available_datasets", "load_configured", "load_dataset", "register"]
