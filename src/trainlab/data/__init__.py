"""Data: toy generators, MNIST sources, splits, in-memory batching and augmentation."""
from trainlab.data.batches import Batches, resolve_batch_size
from trainlab.data.dataset import Dataset, as_dataset, split
from trainlab.data.mnist import load_fashion_mnist, load_mnist
from trainlab.data.toy import blobs, circles, line, moons, spirals, xor

__all__ = ["Batches", "Dataset", "as_dataset", "blobs", "circles", "line", "load_fashion_mnist",
           "load_mnist", "moons", "resolve_batch_size", "spirals", "split", "xor"]
