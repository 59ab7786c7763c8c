"""Data: toy generators, MNIST sources, CSV and NPZ files, splits, in-memory batching and augmentation."""
from trainlab.data.batches import Batches, resolve_batch_size
from trainlab.data.dataset import Dataset, as_dataset, split
from trainlab.data.files import DataFileError, load_csv, load_npz
from trainlab.data.mnist import load_fashion_mnist, load_mnist
from trainlab.data.toy import blobs, circles, line, moons, spirals, xor

__all__ = ["Batches", "DataFileError", "Dataset", "as_dataset", "blobs", "circles", "line", "load_csv",
           "load_fashion_mnist", "load_mnist", "load_npz", "moons", "resolve_batch_size", "spirals", "split", "xor"]
