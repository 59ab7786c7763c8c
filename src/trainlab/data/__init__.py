"""Data: toy generators, MNIST sources, splits, in-memory batching and augmentation."""
from trainlab.data.batches import Batches, resolve_batch_size
from trainlab.data.dataset import Dataset, as_dataset, split
from trainlab.data.toy import blobs, circles, line, moons, spirals, xor

__all__ = ["Batches", "Dataset", "as_dataset", "blobs", "circles", "line", "moons",
           "resolve_batch_size", "spirals", "split", "xor"]
