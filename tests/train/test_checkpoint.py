"""Checkpoint files: round trip, atomic under SIGKILL, and refusal of anything that is not ours."""
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from trainlab.nn import MLP
from trainlab.train.checkpoint import (Checkpoint, CheckpointError, _digest, checkpoint_bytes, load_checkpoint,
                                       load_weights, nonfinite_entries, save_checkpoint, save_weights)


def _ckpt():
    torch.manual_seed(0)
    model = MLP(3, (4,), 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1, betas=(0.8, 0.9))
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    return model, opt, Checkpoint(model=dict(model.state_dict()), optimizer=opt.state_dict(),
                                  callbacks=[{"type": "History", "state": {"epoch": [0], "history": {}}}],
                                  rng={"torch": torch.get_rng_state()},
                                  loop={"epoch": 4, "step": 40, "best": float("inf")},
                                  extra={"config": {"name": "x", "hidden": [4]}})


def test_round_trip_keeps_tensors_scalars_tuples_and_int_keys(tmp_path):
    model, opt, ck = _ckpt()
    save_checkpoint(tmp_path / "c.safetensors", ck)
    back = load_checkpoint(tmp_path / "c.safetensors")
    assert back.epoch == 4 and back.loop["best"] == float("inf") and back.extra == ck.extra
    for k, v in ck.model.items():
        assert torch.equal(back.model[k], v)
    assert back.optimizer["param_groups"][0]["betas"] == (0.8, 0.9)  # a tuple again, not a list
    assert set(back.optimizer["state"]) == set(opt.state_dict()["state"])  # integer keys
    for i, st in opt.state_dict()["state"].items():
        for key, t in st.items():
            assert torch.equal(back.optimizer["state"][i][key], t)
    opt2 = torch.optim.Adam(MLP(3, (4,), 2).parameters(), lr=0.5)
    opt2.load_state_dict(back.optimizer)  # torch accepts what we give back
    assert opt2.param_groups[0]["lr"] == 0.1
    assert torch.equal(back.rng["torch"], ck.rng["torch"])
    # weights can be read out of a full checkpoint, and from a plain weights file
    fresh = MLP(3, (4,), 2)
    load_weights(fresh, tmp_path / "c.safetensors")
    assert torch.equal(fresh.out.weight, model.out.weight)
    save_weights(model, tmp_path / "w.safetensors")
    load_weights(MLP(3, (4,), 2), tmp_path / "w.safetensors")


def test_nonfinite_entries_names_the_bad_tensors():
    _, _, ck = _ckpt()
    assert nonfinite_entries(ck) == []
    ck.model["out.bias"] = torch.tensor([float("nan"), 0.0])
    ck.optimizer["state"][0]["exp_avg"] = ck.optimizer["state"][0]["exp_avg"] * float("inf")
    bad = nonfinite_entries(ck)
    assert "model.out.bias" in bad and any("exp_avg" in b for b in bad)


class _Payload:
    """Unpickling this creates a marker file: the proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(str(marker)))
    assert payload[:1] == b"\x80"
    for name, data in (("raw.safetensors", payload), ("p.pt", payload)):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match="never unpickles"):
            load_checkpoint(tmp_path / name)
        with pytest.raises(CheckpointError):
            load_weights(MLP(3, (4,), 2), tmp_path / name)
    # the zip layout torch.save writes, with the payload inside
    with zipfile.ZipFile(tmp_path / "z.safetensors", "w") as z:
        z.writestr("archive/data.pkl", payload)
    with pytest.raises(CheckpointError, match="pickle or a zip"):
        load_checkpoint(tmp_path / "z.safetensors")
    assert not marker.exists()
    pickle.loads(payload)  # the payload is real: unpickling it does create the marker
    assert marker.exists()


def _header_file(path, header: dict, body: bytes = b""):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)


def test_corrupt_and_crafted_files_are_refused(tmp_path):
    _, _, ck = _ckpt()
    good = checkpoint_bytes(ck)
    cases = {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "garbage": os.urandom(4096),
        "huge header": struct.pack("<Q", 2**40) + b"{}",
        "bad json": struct.pack("<Q", 5) + b"{not}",
    }
    for name, data in cases.items():
        p = tmp_path / f"{name}.safetensors"
        p.write_bytes(data)
        with pytest.raises(CheckpointError):
            load_checkpoint(p)
    # a well-formed safetensors file that is not a checkpoint (plain weights)
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="trainlab-checkpoint tag"):
        load_checkpoint(tmp_path / "plain.safetensors")
    # a crafted header: our tag, but the state points at a tensor that is not there
    state = json.dumps({"optimizer": {"__tensor__": "state.7"}, "callbacks": [], "rng": {}, "loop": {},
                        "extra": {}, "run": {}, "model_keys": []})
    _header_file(tmp_path / "crafted.safetensors",
                 {"__metadata__": {"format": "trainlab-checkpoint", "version": "2", "state": state,
                                   "digest": _digest(state, {})}})
    with pytest.raises(CheckpointError, match="does not hold"):
        load_checkpoint(tmp_path / "crafted.safetensors")
    _header_file(tmp_path / "v9.safetensors", {"__metadata__": {"format": "trainlab-checkpoint", "version": "9"}})
    with pytest.raises(CheckpointError, match="version"):
        load_checkpoint(tmp_path / "v9.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")
    # flipping bytes in the tensor data region is caught when the offsets no longer fit
    bad = bytearray(good)
    n = struct.unpack("<Q", good[:8])[0]
    bad[8 + n // 2] = ord("}")
    (tmp_path / "flipped.safetensors").write_bytes(bytes(bad))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "flipped.safetensors")


WRITER = textwrap.dedent("""
    import sys, torch
    from trainlab.train.checkpoint import Checkpoint, save_checkpoint
    path = sys.argv[1]
    i = 0
    while True:
        i += 1
        big = torch.full((4 * 2**20,), float(i))  # 16 MB, so a write takes a while
        save_checkpoint(path, Checkpoint(model={"w": big}, loop={"epoch": i}))
        print(i, flush=True)
""")


def test_sigkill_during_write_leaves_the_last_checkpoint_loadable(tmp_path):
    path = tmp_path / "last.safetensors"
    killed_mid_write = 0
    for trial in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip()  # one complete checkpoint exists
            deadline = time.monotonic() + 30
            # wait until a new write is in flight (its temp file exists), then kill at once
            while not list(tmp_path.glob(".last.safetensors.*.tmp")):
                assert time.monotonic() < deadline, "the writer never started a second write"
            time.sleep(0.002 * trial)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        strays = list(tmp_path.glob(".last.safetensors.*.tmp"))
        killed_mid_write += bool(strays)
        ck = load_checkpoint(path)  # the previous complete checkpoint, intact
        i = ck.loop["epoch"]
        assert i >= 1 and torch.equal(ck.model["w"], torch.full((4 * 2**20,), float(i)))
        # loading in that folder removed the dead writer's temporary
        assert not any(s.exists() for s in strays)
    assert killed_mid_write >= 1  # the kill really landed inside a write at least once


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    from trainlab.train.checkpoint import _HOST

    dead = tmp_path / f".last.safetensors.{_dead_pid()}-{_HOST}.0a1b2c.tmp"
    live = tmp_path / f".last.safetensors.{os.getppid()}-{_HOST}.0a1b2d.tmp"  # a writer still running
    other_host = tmp_path / f".last.safetensors.{_dead_pid()}-ffffffff.0a1b2e.tmp"
    unrelated = tmp_path / ".notes.tmp"
    for p in (dead, live, other_host, unrelated):
        p.write_bytes(b"x" * 1000)
    _, _, ck = _ckpt()
    save_checkpoint(tmp_path / "last.safetensors", ck)
    assert not dead.exists()
    assert live.exists() and other_host.exists() and unrelated.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] != []
    load_checkpoint(tmp_path / "last.safetensors")  # a load in the folder cleans up as well
    dead.write_bytes(b"x")
    load_checkpoint(tmp_path / "last.safetensors")
    assert not dead.exists()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    _, _, ck = _ckpt()
    old = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "c.safetensors", ck)
    finally:
        os.umask(old)
    assert (tmp_path / "c.safetensors").stat().st_mode & 0o777 == mode


def test_a_version_1_checkpoint_cannot_be_resumed_but_its_weights_load(tmp_path):
    from safetensors.torch import save

    model = MLP(3, (4,), 2)
    tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    state = json.dumps({"optimizer": None, "callbacks": [], "rng": {}, "loop": {}, "extra": {},
                        "model_keys": list(model.state_dict())})
    p = tmp_path / "old.safetensors"
    p.write_bytes(save(tensors, metadata={"format": "trainlab-checkpoint", "version": "1", "state": state}))
    with pytest.raises(CheckpointError, match="unsupported checkpoint version '1'"):
        load_checkpoint(p)
    fresh = load_weights(MLP(3, (4,), 2), p)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))


def test_load_weights_into_the_wrong_model_is_a_checkpoint_error(tmp_path):
    save_weights(MLP(3, (4,), 2), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="do not fit this model"):
        load_weights(MLP(3, (5,), 2), tmp_path / "w.safetensors")
