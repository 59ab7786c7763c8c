"""trainlab.optim against torch.optim: the optimizer step alone, and the MNIST MLP epoch.

1. Step. Two parameter sets with fixed random gradients: "100 tensors" (an MLP of 49 hidden
   layers, widths cycling through 32/64/128, so tensors of many sizes) and "MNIST MLP" (the
   784-256-256-10 MLP's 6 tensors). For Adam, AdamW, SGD with momentum 0.9, Adagrad and RMSprop it
   times ``optimizer.step()`` of trainlab's optimizer — the default (on the CPU the one-pass native
   kernel of :mod:`trainlab.optim.native`), the flat path and the per-tensor ``torch._foreach_*``
   path (both with the kernels off), ``fused=True`` (Adam, AdamW, SGD: on the CPU the native
   kernel as well, on a GPU our rule compiled by ``torch.compile``) and the readable per-tensor
   rule — and of torch.optim's ``foreach=False``, ``foreach=True`` and ``fused=True``. Contestants run round-robin, a block of
   steps each in turn, so that other work on the machine slows them alike; the median over the
   blocks is reported, at each thread count of ``--threads`` (default 1 and 2).

   Goals (issue 13): trainlab's default step and its ``fused=True`` ≤ 1.2× torch's ``fused=True``
   where torch has one; trainlab's default step ≤ 1.0× torch's ``foreach=True``. Beside each time: the memory traffic
   the rule needs (bytes/step: θ, g and each state read once, θ and each state written once)
   divided by the bandwidth a plain copy reaches on buffers of the same size — the time a step at
   memory speed would take — and the step's time as a multiple of it.

2. Epoch. The foundation benchmark's MNIST MLP epoch (benchmarks/bench_mnist_mlp.py: 784-256-256-10,
   batch 128) trained by ``trainlab.fit`` with ``trainlab.optim.Adam`` against the plain PyTorch
   ``DataLoader`` loop with ``torch.optim.Adam``. Goal: ≤ 0.6× the DataLoader loop. Outside
   ``--quick`` two more rows: fit with ``Adam(fused=True)``, and fit with ``compile=True`` on top
   (``torch.compile`` of the model; their compiling first epoch is not timed). (CPU only.)

Timings are wall clock on a shared machine: compare ratios from one run. On a GPU
(``--device cuda``) the step is timed with CUDA events.

    python benchmarks/bench_optim.py                  # full
    python benchmarks/bench_optim.py --quick          # a few steps of everything (a smoke test)
    python benchmarks/bench_optim.py --threads 1,2,4  # thread counts (0: torch's own)
    python benchmarks/bench_optim.py --device cuda
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
KINDS = ("adam", "adamw", "sgd-momentum", "adagrad", "rmsprop")
# tensors the rule must read and write per value: (reads, writes) of θ, g and the states
TRAFFIC = {"adam": (4, 3), "adamw": (4, 3), "sgd-momentum": (3, 2), "adagrad": (3, 2), "rmsprop": (3, 2)}
FUSED_GOAL, FOREACH_GOAL = 1.2, 1.0


def model_with_many_tensors(depth: int = 49, seed: int = 0, device="cpu") -> list[torch.nn.Parameter]:
    """Weights and biases of an MLP with ``depth`` hidden layers: 2·(depth + 1) = 100 tensors."""
    g = torch.Generator().manual_seed(seed)
    widths = [64] + [(32, 64, 128)[i % 3] for i in range(depth)] + [10]
    return _mlp_params(widths, g, device)


def mnist_mlp_params(seed: int = 0, device="cpu") -> list[torch.nn.Parameter]:
    """The 784-256-256-10 MLP's weights and biases (6 tensors, 269,322 values)."""
    return _mlp_params([784, 256, 256, 10], torch.Generator().manual_seed(seed), device)


def _mlp_params(widths, g, device) -> list[torch.nn.Parameter]:
    params = []
    for a, b in zip(widths[:-1], widths[1:]):
        params.append(torch.nn.Parameter(torch.randn(b, a, generator=g) / a ** 0.5))
        params.append(torch.nn.Parameter(torch.zeros(b)))
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 1e-2
    return [_to(p, device) for p in params]


def _to(p: torch.nn.Parameter, device) -> torch.nn.Parameter:
    if torch.device(device).type == "cpu":
        return p
    q = torch.nn.Parameter(p.detach().to(device))
    q.grad = p.grad.to(device)
    return q


PARAM_SETS = {"100 tensors": model_with_many_tensors, "MNIST MLP": mnist_mlp_params}


def _torch_has_fused(cls, device) -> bool:
    try:
        p = torch.nn.Parameter(torch.ones(2, device=device))
        p.grad = torch.ones(2, device=device)
        cls([p], fused=True).step()
        return True
    except (RuntimeError, TypeError, ValueError):
        return False


def contestants(kind: str, device="cpu", fused: bool = True) -> dict:
    """name -> factory(params) for one optimizer kind (one of ``KINDS``)."""
    import trainlab.optim as O

    ours, theirs, kw = {
        "sgd-momentum": (O.SGD, torch.optim.SGD, {"lr": 1e-2, "momentum": 0.9}),
        "adamw": (O.AdamW, torch.optim.AdamW, {"lr": 1e-3}),
        "adam": (O.Adam, torch.optim.Adam, {"lr": 1e-3}),
        "adagrad": (O.Adagrad, torch.optim.Adagrad, {"lr": 1e-2}),
        "rmsprop": (O.RMSprop, torch.optim.RMSprop, {"lr": 1e-2}),
    }[kind]

    def flat(ps):
        opt = ours(ps, **kw)
        opt.native, opt.flat_min_tensors = False, 2
        return opt

    def per_tensor(ps):
        opt = ours(ps, **kw)
        opt.native = False
        for g in opt.param_groups:
            g["flat"] = False
        return opt

    out = {"trainlab": lambda ps: ours(ps, **kw), "trainlab flat path": flat, "trainlab per-tensor foreach": per_tensor}
    if fused and kind in ("adam", "adamw", "sgd-momentum"):
        out["trainlab fused=True"] = lambda ps: ours(ps, fused=True, **kw)
    out["trainlab (readable rule)"] = lambda ps: ours(ps, foreach=False, **kw)
    out["torch foreach=False"] = lambda ps: theirs(ps, foreach=False, **kw)
    out["torch foreach=True"] = lambda ps: theirs(ps, foreach=True, **kw)
    if _torch_has_fused(theirs, device):
        out["torch fused=True"] = lambda ps: theirs(ps, fused=True, **kw)
    return out


class Timer:
    """Seconds per call of a block of calls: wall clock on the CPU, CUDA events on a GPU."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"

    def __call__(self, fn, n: int) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(n):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3 / n
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n


def copy_bandwidth(n_values: int, device, timer: Timer, reps: int = 20) -> float:
    """Bytes per second a plain ``dst.copy_(src)`` of ``n_values`` float32 values reaches (best of 5)."""
    src = torch.randn(n_values, device=device)
    dst = torch.empty_like(src)
    best = min(timer(lambda: dst.copy_(src), reps) for _ in range(5))
    return 2 * 4 * n_values / best


def time_steps(kind: str, blocks: int, steps: int, make_params=model_with_many_tensors,
               device="cpu", fused: bool = True) -> dict[str, float]:
    """Median seconds per step of each contestant (round-robin blocks of ``steps`` steps)."""
    makers = contestants(kind, device, fused)
    opts = {name: make(make_params(device=device)) for name, make in makers.items()}
    for opt in opts.values():  # warm-up: state allocated, flat buffers built, kernels compiled
        for _ in range(3):
            opt.step()
    timer = Timer(device)
    times = {name: [] for name in opts}
    for _ in range(blocks):
        for name, opt in opts.items():
            times[name].append(timer(opt.step, steps))
    return {name: statistics.median(v) for name, v in times.items()}


def _verdict(ratio: float, goal: float) -> str:
    return f"ratio {ratio:.2f} (goal ≤ {goal}) {'ok' if ratio <= goal else 'NOT met'}"


def step_table(blocks: int, steps: int, device, fused: bool, sets: list[str]) -> dict:
    """Every kind on every parameter set at the current thread count; prints the tables."""
    timer = Timer(device)
    out: dict = {}
    for set_name in sets:
        make = PARAM_SETS[set_name]
        params = make(device=device)
        n_values = sum(p.numel() for p in params)
        bw = copy_bandwidth(n_values, device, timer)
        print(f"\n{set_name}: {len(params)} tensors, {n_values:,} values; copy bandwidth "
              f"{bw / 1e9:.1f} GB/s")
        out[set_name] = {"tensors": len(params), "values": n_values, "copy_GBps": bw / 1e9, "kinds": {}}
        for kind in KINDS:
            t = time_steps(kind, blocks, steps, make, device, fused)
            reads, writes = TRAFFIC[kind]
            nbytes = (reads + writes) * 4 * n_values
            floor = nbytes / bw
            ref = t["torch foreach=True"]
            rows = {name: {"us_per_step": 1e6 * s, "ratio_to_torch_foreach": s / ref,
                           "x_memory_floor": s / floor} for name, s in t.items()}
            goals = {"trainlab / torch foreach=True": (t["trainlab"] / ref, FOREACH_GOAL)}
            if "torch fused=True" in t:
                goals["trainlab / torch fused=True"] = (t["trainlab"] / t["torch fused=True"], FUSED_GOAL)
            if "trainlab fused=True" in t and "torch fused=True" in t:
                goals["trainlab fused=True / torch fused=True"] = (
                    t["trainlab fused=True"] / t["torch fused=True"], FUSED_GOAL)
            out[set_name]["kinds"][kind] = {"rows": rows, "bytes_per_step": nbytes,
                                            "memory_floor_us": 1e6 * floor,
                                            "goals": {k: {"ratio": r, "goal": g, "met": r <= g}
                                                      for k, (r, g) in goals.items()}}
            print(f"  {kind}: {nbytes / 1e6:.2f} MB/step ÷ {bw / 1e9:.1f} GB/s = {1e6 * floor:.1f} µs at memory speed")
            print(f"    {'':30s}{'µs/step':>10s}{'× torch foreach':>17s}{'× memory':>10s}")
            for name, s in t.items():
                print(f"    {name:30s}{1e6 * s:10.1f}{s / ref:17.2f}{s / floor:10.2f}")
            for label, (r, g) in goals.items():
                print(f"    {label}: {_verdict(r, g)}")
                # for make bench's table (benchmarks/run_all.py): optim.<kind>.<set>.<contestant>.t<threads>
                who = {"trainlab / torch foreach=True": "default_vs_torch_foreach",
                       "trainlab / torch fused=True": "default_vs_torch_fused"}.get(label, "fused_vs_torch_fused")
                where = set_name.lower().replace(" ", "_")
                print(f"RATIO optim.{kind}.{where}.{who}.t{torch.get_num_threads()} {r:.3f} <= {g}")
    return out


def _foundation():
    spec = importlib.util.spec_from_file_location("bench_mnist_mlp_for_optim", HERE / "bench_mnist_mlp.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _compiled_contestants(bench, train, seed: int) -> list:
    """trainlab fit with Adam(fused=True), and with compile=True on top (the first epoch compiles)."""
    from trainlab.optim import Adam

    class Fused(bench.Trainlab):
        def __init__(self, compile_model: bool):
            super().__init__(train, seed)
            self.opt = Adam(self.model.parameters(), lr=bench.LR, fused=True)
            self.compile = compile_model
            self.name = "trainlab fit compile=True" if compile_model else "trainlab fit fused Adam"
            self.optimizer = "trainlab.optim.Adam(fused=True)"

        def epoch(self):
            self.fit(self.model, self.train, loss="cross_entropy", optimizer=self.opt, epochs=1,
                     batch_size=bench.BATCH, verbose=False, device="cpu", generator=self.generator,
                     compile=self.compile)

    return [Fused(False), Fused(True)]


def time_epochs(quick: bool, epochs: int, seed: int = 0, compiled: bool = False) -> dict:
    """The foundation's MNIST MLP epoch: trainlab fit + our Adam vs the DataLoader loop + torch Adam
    (and, with ``compiled``, fit with ``Adam(fused=True)`` and with ``compile=True`` as well; their
    first epoch, which compiles, is run before the timed ones)."""
    bench = _foundation()
    train, test, source = bench.load_data(quick, seed)
    ours = bench.Trainlab(train, seed)
    loop = bench.TorchDataLoader(train, seed)
    racers = [ours, loop]
    if compiled:
        extra = _compiled_contestants(bench, train, seed)
        for c in extra:
            c.epoch()  # compiles: not timed
        racers += extra
    wall = {c.name: [] for c in racers}
    for _ in range(epochs):
        for c in racers:
            t0 = time.perf_counter()
            c.epoch()
            wall[c.name].append(time.perf_counter() - t0)
    rows = {c.name: {"optimizer": c.optimizer, "s_per_epoch": statistics.median(wall[c.name]),
                     "accuracy": c.accuracy(test)} for c in racers}
    for row in rows.values():
        row["ratio_to_loop"] = row["s_per_epoch"] / rows[loop.name]["s_per_epoch"]
    return {"data": source, "rows": rows,
            "ratio": rows[ours.name]["s_per_epoch"] / rows[loop.name]["s_per_epoch"]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a few steps and batches: a smoke test "
                   "(without fused=True, whose first step compiles for seconds)")
    p.add_argument("--blocks", type=int, default=15, help="round-robin blocks per contestant")
    p.add_argument("--steps", type=int, default=20, help="steps per block")
    p.add_argument("--epochs", type=int, default=3, help="MNIST epochs per contestant")
    p.add_argument("--threads", default="1,2",
                   help="comma-separated torch thread counts, each measured in turn (default 1,2; "
                        "0 keeps torch's choice)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda: where the step runs")
    p.add_argument("--no-fused", action="store_true", help="leave out trainlab's fused=True")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    threads_before = torch.get_num_threads()
    try:
        return _main(args)
    finally:
        torch.set_num_threads(threads_before)


def _main(args) -> dict:
    device = torch.device(args.device)
    blocks, steps, epochs = (2, 2, 1) if args.quick else (args.blocks, args.steps, args.epochs)
    fused = not (args.quick or args.no_fused)
    sets = ["100 tensors"] if args.quick else list(PARAM_SETS)
    counts = [int(c) for c in str(args.threads).split(",") if c.strip()]
    if device.type == "cuda":
        counts = counts[:1]  # the GPU step does not depend on the CPU's thread count
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"optimizer step on device {device} ({name}), median of {blocks} blocks of {steps} steps; "
          f"times measured side by side (under load on a shared machine: read the ratios)")
    result: dict = {"device": str(device), "step": {}, "tensors": len(model_with_many_tensors())}
    for n in counts:
        if n:
            torch.set_num_threads(n)
        print(f"\n=== torch threads {torch.get_num_threads()} ===")
        result["step"][torch.get_num_threads()] = step_table(blocks, steps, device, fused, sets)
    if device.type == "cpu":
        print(f"\nMNIST MLP epoch (the foundation benchmark's; {epochs} epoch(s) each, round-robin, "
              f"torch threads {torch.get_num_threads()})")
        ep = time_epochs(args.quick, epochs, compiled=fused)
        result["epoch"] = ep
        print(f"  data: {ep['data']}")
        for row_name, row in ep["rows"].items():
            print(f"  {row_name:28s}{row['s_per_epoch']:8.3f} s/epoch  accuracy {row['accuracy']:.4f}  "
                  f"× loop {row['ratio_to_loop']:.2f}  ({row['optimizer']})")
        print(f"  time ratio trainlab / DataLoader loop: {ep['ratio']:.2f} (goal ≤ 0.65: the speed issue's goal 3)")
        print(f"RATIO optim.mnist_epoch_fit_vs_dataloader {ep['ratio']:.3f} <= 0.65")
        if fused:
            print("  (the fused and compiled rows trained one epoch more: their compiling first epoch, untimed)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
