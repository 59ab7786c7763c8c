"""The playground's speed: decision-boundary frames per second and training steps per second.

A real server (uvicorn on a free 127.0.0.1 port, in this process) and a WebSocket client that
plays a 2-8-8-2 tanh net on moons (400 points, 70 % train) at batch 10 with SGD, for a few
seconds, counting the frames that arrive (each one a 64 × 64 boundary from one batched forward
pass, the per-unit heatmaps, weights, gradient norms, unit health and train/test losses) and the
steps they report. The goals (issue 15): ≥ 30 frames/s while training at ≥ 500 steps/s.

For comparison the same net trains by ``trainlab.fit`` alone (no page, no frames) on the same
data: the ratio is what the live view costs the training.

    python benchmarks/bench_playground.py            # 8 s of playing
    python benchmarks/bench_playground.py --quick    # 2 s (a smoke test)
"""
from __future__ import annotations

import argparse
import json
import socket
import threading
import time

import torch

FPS_GOAL, STEPS_GOAL = 30, 500
SETTINGS = {"data": "moons", "n": 400, "hidden": "8,8", "activation": "tanh", "optimizer": "sgd", "lr": 0.1,
            "batch_size": "10", "epochs": 100000}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_page(seconds: float) -> tuple[float, float]:
    """(frames per second, steps per second) seen by a WebSocket client while playing."""
    import uvicorn
    from websockets.sync.client import connect

    from trainlab.playground.server import create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(runs_root="runs"), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with connect(f"ws://127.0.0.1:{port}/ws", max_size=2**24) as ws:
            ws.send(json.dumps({"type": "init", "settings": SETTINGS}))
            while json.loads(ws.recv())["type"] != "frame":
                pass
            ws.send(json.dumps({"type": "play"}))
            frames, first, last = 0, None, None
            t_end = time.perf_counter() + seconds + 1.0
            while time.perf_counter() < t_end:
                m = json.loads(ws.recv())
                if m["type"] != "frame":
                    continue
                now = time.perf_counter()
                if first is None:  # count from the first frame of the running run
                    first = (now, m["step"])
                    continue
                frames += 1
                last = (now, m["step"])
            ws.send(json.dumps({"type": "pause"}))
    finally:
        server.should_exit = True
        thread.join(10)
    dt = last[0] - first[0]
    return frames / dt, (last[1] - first[1]) / dt


def measure_fit(steps: int) -> float:
    """Steps per second of ``fit`` alone on the same net, data and batch size."""
    from trainlab.experiments.config import parse_config
    from trainlab.experiments.runner import build_training
    from trainlab.playground.live import config_from_settings
    from trainlab.train.loop import fit

    cfg = parse_config(config_from_settings({**SETTINGS, "epochs": 1}))
    data, loss, model, opt = build_training(cfg, torch.device("cpu"))
    per_epoch = -(-len(data.train) // 10)
    epochs = max(1, steps // per_epoch)
    t0 = time.perf_counter()
    fit(model, data.train, data.val, loss=loss, optimizer=opt, epochs=epochs, batch_size=10, verbose=False, seed=0)
    return epochs * per_epoch / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="2 s of playing (a smoke test)")
    p.add_argument("--seconds", type=float, default=8.0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    seconds = 2.0 if args.quick else args.seconds
    fps, sps = measure_page(seconds)
    plain = measure_fit(int(sps * seconds / 2) or 200)
    print(f"playground (2-8-8-2, batch 10, 64x64 boundary): {fps:6.1f} frames/s (goal >= {FPS_GOAL}), "
          f"{sps:7.0f} steps/s (goal >= {STEPS_GOAL})")
    print(f"fit alone, same net and data:                   {plain:7.0f} steps/s; the live view keeps "
          f"{sps / plain:.2f}x of it")
    ok = fps >= FPS_GOAL and sps >= STEPS_GOAL
    print("goals met" if ok else "goals NOT met (on a loaded machine, rerun when it is quiet)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
