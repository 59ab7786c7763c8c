"""plot_augmented_grid draws originals and reproducible augmented draws."""
import torch

from trainlab.data.augment import Compose, Rotation, Shift
from trainlab.experiments.plots import plot_augmented_grid


def test_grid_of_augmented_samples(tmp_path):
    x = torch.rand(3, 784)
    calls = []

    def recording(batch, generator=None):
        calls.append(generator.initial_seed())
        return Compose([Rotation(20), Shift(0.1)])(batch, generator)

    p = plot_augmented_grid(x, recording, tmp_path / "grid.png", repeats=4, seed=10, title="t")
    assert p.exists() and p.stat().st_size > 1000
    assert calls == [10, 11, 12, 13]
    # plain callables without a generator argument, and image batches, work too
    p = plot_augmented_grid(x.reshape(3, 1, 28, 28), lambda b: b.flip(-1), tmp_path / "g2.png", repeats=2)
    assert p.exists()
    rgb = torch.rand(2, 3, 8, 8)
    assert plot_augmented_grid(rgb.reshape(2, -1), lambda b: b, tmp_path / "g3.png", repeats=1,
                               image_shape=(3, 8, 8)).exists()
