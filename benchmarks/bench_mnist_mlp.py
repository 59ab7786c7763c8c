"""The foundation benchmark: one MNIST MLP trained three ways, side by side in one run.

The same 784-256-256-10 ReLU MLP, Adam (lr 1e-3), batch 128, cross-entropy, the same epochs:

trainlab      :func:`trainlab.fit` (data held as tensors, batches by index, one closure step);
DataLoader    a plain PyTorch loop over ``torch.utils.data.DataLoader(TensorDataset(X, y),
              batch_size=128, shuffle=True)`` with ``torch.optim.Adam`` at its defaults — the loop
              most tutorials write;
scikit-learn  ``MLPClassifier(hidden_layer_sizes=(256, 256), solver="adam",
              learning_rate_init=1e-3, batch_size=128, alpha=0)`` (alpha=0: no L2 penalty, as in
              the other two).

It prints seconds per epoch (wall time of the whole training call divided by the epochs), test
accuracy after the same epochs, and trainlab's time as a fraction of each peer's. The goal:
trainlab's epoch ≤ 0.6× the DataLoader loop's and ≤ 0.6× MLPClassifier's, at equal test accuracy
(within ±0.5 points). Data: trainlab's MNIST loader (50,000 train / 10,000 test images in [0, 1]).

trainlab's optimizer is ``trainlab.optim.Adam`` when that import works (else ``torch.optim.Adam``);
the line "optimizer:" says which ran. Timings are wall clock on a shared machine: compare the
ratios from one run, not absolute numbers across runs.

    python benchmarks/bench_mnist_mlp.py               # 3 epochs on MNIST
    python benchmarks/bench_mnist_mlp.py --epochs 5
    python benchmarks/bench_mnist_mlp.py --quick       # a few batches each (a smoke test)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

HIDDEN = (256, 256)
LR, BATCH = 1e-3, 128


def load_data(quick: bool, seed: int):
    """MNIST train/test; in quick mode a small subset (random data when no MNIST source exists)."""
    from trainlab.data import Dataset
    from trainlab.data.mnist import MnistUnavailableError, load_mnist

    try:
        train, _, test = load_mnist(download=not quick)
        source = "MNIST"
    except MnistUnavailableError:
        if not quick:
            raise
        g = torch.Generator().manual_seed(seed)
        train = Dataset(torch.rand(512, 784, generator=g), torch.randint(0, 10, (512,), generator=g))
        test = Dataset(torch.rand(256, 784, generator=g), torch.randint(0, 10, (256,), generator=g))
        source = "random data (no MNIST source installed)"
    if quick:
        train, test = train.subset(slice(0, 512)), test.subset(slice(0, 256))
    return train, test, source


def torch_mlp() -> nn.Module:
    layers, width = [], 784
    for h in HIDDEN:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, 10))


@torch.no_grad()
def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    acc = float((model(X).argmax(1) == y).float().mean())
    model.train()
    return acc


def trainlab_optimizer():
    try:
        from trainlab.optim import Adam
        return Adam, "trainlab.optim.Adam"
    except ImportError:
        return torch.optim.Adam, "torch.optim.Adam"


def run_trainlab(train, test, epochs: int, seed: int) -> dict:
    import trainlab
    from trainlab.nn.models import MLP

    Adam, name = trainlab_optimizer()
    torch.manual_seed(seed)
    model = MLP(784, HIDDEN, 10, activation="relu")
    opt = Adam(model.parameters(), lr=LR)
    t0 = time.perf_counter()
    trainlab.fit(model, train, loss="cross_entropy", optimizer=opt, epochs=epochs, batch_size=BATCH,
                 seed=seed, verbose=False, device="cpu")
    seconds = time.perf_counter() - t0
    return {"name": "trainlab fit", "optimizer": name, "s_per_epoch": seconds / epochs,
            "accuracy": accuracy(model, test.X, test.y)}


def run_dataloader(train, test, epochs: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = torch_mlp()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loader = DataLoader(TensorDataset(train.X, train.y), batch_size=BATCH, shuffle=True)
    t0 = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
    seconds = time.perf_counter() - t0
    return {"name": "PyTorch DataLoader loop", "optimizer": "torch.optim.Adam",
            "s_per_epoch": seconds / epochs, "accuracy": accuracy(model, test.X, test.y)}


def run_sklearn(train, test, epochs: int, seed: int) -> dict:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X, y = train.X.numpy(), train.y.numpy()
    clf = MLPClassifier(hidden_layer_sizes=HIDDEN, activation="relu", solver="adam",
                        learning_rate_init=LR, batch_size=BATCH, alpha=0.0, max_iter=epochs,
                        shuffle=True, tol=0.0, n_iter_no_change=epochs + 1, random_state=seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is the epoch budget here
        clf.fit(X, y)
    seconds = time.perf_counter() - t0
    acc = float((clf.predict(test.X.numpy()) == test.y.numpy()).mean())
    return {"name": "scikit-learn MLPClassifier", "optimizer": "adam (sklearn)",
            "s_per_epoch": seconds / epochs, "accuracy": acc}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="512 samples (4 batches), 1 epoch: a smoke test")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice); 1 is the "
                   "least disturbed by other work on a busy machine")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    epochs = 1 if args.quick else args.epochs
    train, test, source = load_data(args.quick, args.seed)
    print(f"data: {source}, {len(train)} train / {len(test)} test; MLP 784-{'-'.join(map(str, HIDDEN))}-10 "
          f"ReLU, Adam lr {LR}, batch {BATCH}, {epochs} epoch(s); torch threads: {torch.get_num_threads()}")
    rows = [run_trainlab(train, test, epochs, args.seed), run_dataloader(train, test, epochs, args.seed),
            run_sklearn(train, test, epochs, args.seed)]
    print(f"optimizer: trainlab used {rows[0]['optimizer']}")
    mine = rows[0]
    print(f"\n{'':28s}{'s/epoch':>10s}{'test acc':>10s}{'trainlab / this':>17s}")
    for r in rows:
        r["ratio"] = mine["s_per_epoch"] / r["s_per_epoch"]
        print(f"{r['name']:28s}{r['s_per_epoch']:10.3f}{100 * r['accuracy']:9.2f}%{r['ratio']:17.2f}")
    print()
    for r in rows[1:]:
        gap = 100 * (mine["accuracy"] - r["accuracy"])
        time_ok, acc_ok = r["ratio"] <= 0.6, abs(gap) <= 0.5
        print(f"vs {r['name']}: time ratio {r['ratio']:.2f} (goal <= 0.6: {'met' if time_ok else 'NOT met'}), "
              f"accuracy gap {gap:+.2f} points (goal within 0.5: {'met' if acc_ok else 'NOT met'})")
    if args.quick:
        print("(quick mode: a smoke test; the numbers mean nothing)")
    result = {"epochs": epochs, "source": source, "quick": args.quick, "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
