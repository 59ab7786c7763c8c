"""Wall time to a target MNIST test accuracy: trainlab against its peers, side by side in one run.

Two races, each timed from "data in memory" to "test accuracy ≥ target", with the test accuracy
measured the same way for every contestant (the whole 10,000-image test set after every epoch, the
evaluation's time counted):

MLP to 98 %
    * a plain PyTorch loop: ``DataLoader(TensorDataset)``, batch 128, shuffled, Adam (lr 1e-3);
    * scikit-learn's ``MLPClassifier`` (adam, lr 1e-3, batch 128), one ``partial_fit`` per epoch;
    * trainlab: :func:`trainlab.fit` with its recipe (below).
    All three use the same architecture: 784 → 512 → 256 → 10 with ReLU.

CNN to 99 %
    * the classic PyTorch MNIST example: conv 32 3×3 → ReLU → conv 64 3×3 → ReLU → max-pool 2 →
      dropout 0.25 → fc 9216→128 → ReLU → dropout 0.5 → fc 128→10, Adadelta (lr 1.0), batch 64,
      StepLR (γ = 0.7 per epoch), DataLoader;
    * trainlab: :func:`trainlab.fit` with trainlab's CNN and recipe (below).

Every contestant trains on the 60,000 training images (trainlab's MNIST loader with val_size=0)
and is scored on the 10,000 test images, in float32 on the CPU. Inputs are the same [0, 1] pixels
for everyone (no normalization tricks on one side only). The ratio printed is
trainlab time / peer time (lower is better; the goals are ≤ 0.3 for the MLP and ≤ 0.2 for the CNN).

Usage::

    python benchmarks/bench_time_to_accuracy.py            # both races, full data
    python benchmarks/bench_time_to_accuracy.py --quick    # a few hundred steps each (smoke test)
    python benchmarks/bench_time_to_accuracy.py --only mlp --json out.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


@dataclass
class Race:
    contestant: str
    target: float
    seconds: float | None  # None: the target was not reached within max_epochs
    epochs: int
    accuracies: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    @property
    def reached(self) -> bool:
        return self.seconds is not None


# ---------------------------------------------------------------------------------------------
# data


def load(quick: bool, n_quick: int = 2000):
    from trainlab.data.mnist import load_mnist

    train, _, test = load_mnist(val_size=0)
    if quick:
        g = torch.Generator().manual_seed(0)
        train = train.subset(torch.randperm(len(train), generator=g)[:n_quick])
        test = test.subset(torch.randperm(len(test), generator=g)[: n_quick // 2])
    return train, test


@torch.no_grad()
def test_accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch: int = 2000, images=False) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(X), batch):
        xb = X[i : i + batch]
        if images:
            xb = xb.view(-1, 1, 28, 28)
        correct += int((model(xb).argmax(1) == y[i : i + batch]).sum())
    model.train()
    return correct / len(X)


# ---------------------------------------------------------------------------------------------
# the MLP race


def torch_mlp(hidden=(512, 256)) -> nn.Module:
    layers, width = [], 784
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, 10))


def peer_torch_mlp(train, test, target, max_epochs, seed=0) -> Race:
    """The plain PyTorch loop the README of every tutorial shows."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model = torch_mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(train.X, train.y), batch_size=128, shuffle=True)
    loss_fn = nn.CrossEntropyLoss()
    race = Race("PyTorch DataLoader loop (Adam 1e-3, batch 128)", target, None, 0)
    for epoch in range(max_epochs):
        for xb, yb in loader:
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
        acc = test_accuracy(model, test.X, test.y)
        race.epochs = epoch + 1
        race.accuracies.append(acc)
        race.times.append(time.perf_counter() - t0)
        if acc >= target:
            race.seconds = race.times[-1]
            break
    return race


def peer_sklearn_mlp(train, test, target, max_epochs, seed=0) -> Race:
    """scikit-learn's MLPClassifier, one epoch per partial_fit, scored after each."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X, y = train.X.numpy(), train.y.numpy()
    Xt, yt = test.X.numpy(), test.y.numpy()
    t0 = time.perf_counter()
    clf = MLPClassifier(hidden_layer_sizes=(512, 256), solver="adam", learning_rate_init=1e-3,
                        batch_size=128, shuffle=True, random_state=seed, alpha=1e-4)
    race = Race("scikit-learn MLPClassifier (adam 1e-3, batch 128)", target, None, 0)
    classes = list(range(10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for epoch in range(max_epochs):
            clf.partial_fit(X, y, classes=classes)
            acc = float((clf.predict(Xt) == yt).mean())
            race.epochs = epoch + 1
            race.accuracies.append(acc)
            race.times.append(time.perf_counter() - t0)
            if acc >= target:
                race.seconds = race.times[-1]
                break
    return race


class StopAtAccuracy:
    """A trainlab callback: stop once the validation accuracy reaches ``target``; note the time."""

    def __new__(cls, *args, **kwargs):
        from trainlab.train.callbacks import Callback

        class _Stop(Callback):
            def __init__(self, target: float, t0: float):
                self.target, self.t0 = target, t0
                self.accuracies: list[float] = []
                self.times: list[float] = []
                self.reached_at: float | None = None

            def on_epoch_end(self, epoch, logs):
                self.accuracies.append(logs["val_accuracy"])
                self.times.append(time.perf_counter() - self.t0)
                if logs["val_accuracy"] >= self.target and self.reached_at is None:
                    self.reached_at = self.times[-1]
                    self.loop.stop_training = True

        return _Stop(*args, **kwargs)


def trainlab_mlp(train, test, target, max_epochs, seed=0, recipe: dict | None = None) -> Race:
    """trainlab's recipe for the same MLP (see RECIPES)."""
    import trainlab
    from trainlab.nn import MLP

    r = dict(RECIPES["mlp"], **(recipe or {}))
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model = MLP(784, hidden=(512, 256), out_features=10, activation="relu")
    opt = torch.optim.Adam(model.parameters(), lr=r["lr"])
    stop = StopAtAccuracy(target, t0)
    callbacks = [stop] + _schedule(opt, r, len(train), max_epochs)
    trainlab.fit(model, train, test, loss="cross_entropy", optimizer=opt, epochs=max_epochs,
                 batch_size=r["batch_size"], callbacks=callbacks, seed=seed, verbose=False, device="cpu")
    return Race(f"trainlab fit ({r['describe']})", target, stop.reached_at, len(stop.accuracies),
                stop.accuracies, stop.times)


def _schedule(opt, r, n, max_epochs):
    """The learning-rate schedule of a recipe as trainlab callbacks (none when the recipe has none)."""
    return []


# ---------------------------------------------------------------------------------------------
# the CNN race


class ClassicNet(nn.Module):
    """The network of the classic PyTorch MNIST example (pytorch/examples, mnist/main.py)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = self.dropout2(x)
        return self.fc2(x)


def peer_classic_cnn(train, test, target, max_epochs, seed=0) -> Race:
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model = ClassicNet()
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    loader = DataLoader(TensorDataset(train.X.view(-1, 1, 28, 28), train.y), batch_size=64, shuffle=True)
    race = Race("classic PyTorch MNIST example (Adadelta 1.0, batch 64, StepLR 0.7)", target, None, 0)
    for epoch in range(max_epochs):
        for xb, yb in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
        sched.step()
        acc = test_accuracy(model, test.X, test.y, images=True)
        race.epochs = epoch + 1
        race.accuracies.append(acc)
        race.times.append(time.perf_counter() - t0)
        if acc >= target:
            race.seconds = race.times[-1]
            break
    return race


def trainlab_cnn(train, test, target, max_epochs, seed=0, recipe: dict | None = None) -> Race:
    import trainlab
    from trainlab.nn import CNN

    r = dict(RECIPES["cnn"], **(recipe or {}))
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model = CNN((1, 28, 28), channels=r["channels"], hidden=r["hidden"], classes=10, norm=r["norm"],
                dropout=r["dropout"])
    opt = torch.optim.Adam(model.parameters(), lr=r["lr"])
    stop = StopAtAccuracy(target, t0)
    callbacks = [stop] + _schedule(opt, r, len(train), max_epochs)
    trainlab.fit(model, train, test, loss="cross_entropy", optimizer=opt, epochs=max_epochs,
                 batch_size=r["batch_size"], callbacks=callbacks, seed=seed, verbose=False, device="cpu")
    return Race(f"trainlab fit ({r['describe']})", target, stop.reached_at, len(stop.accuracies),
                stop.accuracies, stop.times)


RECIPES = {
    "mlp": {"lr": 2e-3, "batch_size": 256, "describe": "Adam 2e-3, batch 256"},
    "cnn": {"lr": 2e-3, "batch_size": 128, "channels": (16, 32), "hidden": 128, "norm": "batch",
            "dropout": 0.0, "describe": "CNN 16/32 with batch norm, Adam 2e-3, batch 128"},
}


# ---------------------------------------------------------------------------------------------


def warm_up() -> None:
    """One untimed step of each kind of layer and optimizer, so no contestant pays the one-off
    costs (kernel selection, allocator growth, lazy imports) for the others."""
    import trainlab  # noqa: F401

    torch.manual_seed(0)
    for model, x in ((torch_mlp(), torch.rand(64, 784)), (ClassicNet(), torch.rand(64, 1, 28, 28))):
        for opt in (torch.optim.Adam(model.parameters()), torch.optim.Adadelta(model.parameters())):
            opt.zero_grad()
            model(x).logsumexp(1).mean().backward()
            opt.step()


def _fmt(race: Race) -> str:
    if race.reached:
        return f"{race.seconds:8.1f} s  ({race.epochs} epochs, test acc {race.accuracies[-1]:.4f})"
    best = max(race.accuracies) if race.accuracies else float("nan")
    return f"  not reached in {race.epochs} epochs (best {best:.4f}, {race.times[-1] if race.times else 0:.1f} s)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 training images, 1–2 epochs: a smoke test")
    ap.add_argument("--only", choices=["mlp", "cnn"], help="run one race")
    ap.add_argument("--max-epochs", type=int, default=None)
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)

    train, test = load(args.quick)
    warm_up()
    quick = args.quick
    mlp_target, cnn_target = (0.5, 0.5) if quick else (0.98, 0.99)
    max_epochs = args.max_epochs or (1 if quick else 30)
    print(f"trainlab time-to-accuracy benchmark: {len(train)} training / {len(test)} test images, "
          f"{os.cpu_count()} CPU cores, torch {torch.__version__} with {torch.get_num_threads()} threads"
          + (" (quick smoke test: low targets)" if quick else ""))
    out: dict = {"quick": quick, "races": {}}
    if args.only in (None, "mlp"):
        print(f"\nMLP 784-512-256-10 to {mlp_target:.0%} test accuracy")
        races = [trainlab_mlp(train, test, mlp_target, max_epochs),
                 peer_torch_mlp(train, test, mlp_target, max_epochs),
                 peer_sklearn_mlp(train, test, mlp_target, max_epochs)]
        out["races"]["mlp"] = _report(races)
    if args.only in (None, "cnn"):
        print(f"\nCNN to {cnn_target:.0%} test accuracy")
        races = [trainlab_cnn(train, test, cnn_target, max_epochs),
                 peer_classic_cnn(train, test, cnn_target, max_epochs)]
        out["races"]["cnn"] = _report(races)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


def _report(races: list[Race]) -> dict:
    ours = races[0]
    for r in races:
        print(f"  {r.contestant:<72} {_fmt(r)}")
    ratios = {}
    for peer in races[1:]:
        if ours.reached and peer.reached:
            ratios[peer.contestant] = ours.seconds / peer.seconds
            print(f"  ratio trainlab / {peer.contestant.split(' (')[0]}: {ratios[peer.contestant]:.3f}×")
        else:
            print(f"  ratio trainlab / {peer.contestant.split(' (')[0]}: n/a (a target was not reached)")
    return {"races": [asdict(r) for r in races], "ratios": ratios}


if __name__ == "__main__":
    sys.exit(main())
