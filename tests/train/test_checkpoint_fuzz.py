"""Hostile checkpoints: every mutant of a real checkpoint raises CheckpointError, quickly and in
bounded memory; intact files always load, whatever their header length looks like."""
import json
import random
import resource
import struct
import time
import tracemalloc

import pytest
import torch

from trainlab.data import moons
from trainlab.nn import MLP
from trainlab.train import fit
from trainlab.train.callbacks import CSVLogger, EarlyStopping, ModelCheckpoint
from trainlab.train.checkpoint import (Checkpoint, CheckpointError, _digest, checkpoint_bytes, load_checkpoint,
                                       save_checkpoint)

EPOCHS = 3


def _setup():
    torch.manual_seed(0)
    data = moons(60, noise=0.2, seed=1)
    model = MLP(2, (6,), 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    return data, model, opt


def _fit(tmp, resume=None, epochs=EPOCHS):
    data, model, opt = _setup()
    cbs = [EarlyStopping(monitor="loss", patience=50), CSVLogger(tmp / "log.csv"),
           ModelCheckpoint(tmp / "ck", monitor="loss", save_best=True)]
    return fit(model, data, loss="cross_entropy", optimizer=opt, epochs=epochs, batch_size=30, seed=4,
               verbose=False, callbacks=cbs, resume_from=resume)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The bytes of a checkpoint written by a real (two-epoch) fit, and its folder."""
    tmp = tmp_path_factory.mktemp("real")
    _fit(tmp, epochs=2)
    return (tmp / "ck" / "last.safetensors").read_bytes(), tmp


def _split(data: bytes):
    (n,) = struct.unpack("<Q", data[:8])
    return n, json.loads(data[8 : 8 + n]), data[8 + n :]


def _assemble(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + body


def _paths(obj, path=()):
    """Every position in a JSON tree (containers and leaves), as key paths."""
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, path + (i,))


def _replace(tree, path, value):
    tree = json.loads(json.dumps(tree))
    if not path:
        return value
    node = tree
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return tree


DEEP = "[" * 5000 + "]" * 5000  # far beyond any real nesting, below the JSON parser's own limit
SWAPS = [None, 5, -1, 2.5, "x", True, [], {}, [1, 2], {"__torch__": 5}, {"__torch__": "cuda:x"},
         {"__torch__": "torch.nothing"}, {"__tensor__": "model.out.weight"}, {"__tensor__": 3},
         {"__dict__": 7}, {"__dict__": [[[], 1]]}, {"__tuple__": "ab"}, {"__weird__": 1},
         {"__tensor__": "state.0", "x": 1}, "DEEP"]


def _json_mutants(data: bytes, rng: random.Random, k: int):
    """(description, state JSON) pairs: ``k`` seeded type swaps at every position of the state
    tree, and the fields restore relies on removed."""
    _, header, _ = _split(data)
    tree = json.loads(header["__metadata__"]["state"])
    paths = list(_paths(tree))
    out = []
    for key in list(tree):
        t = dict(tree)
        del t[key]
        out.append((f"without {key}", json.dumps(t)))
    for path in ["rng.torch", "rng.data", "loop.epoch", "loop.steps_per_epoch", "optimizer.state",
                 "optimizer.param_groups"]:
        a, b = path.split(".")
        t = json.loads(json.dumps(tree))
        del t[a][b]
        out.append((f"without {path}", json.dumps(t)))
    for path, swap in ((p, rng.choice(SWAPS)) for p in paths for _ in range(k)):
        text = json.dumps(_replace(tree, path, "@DEEP@" if swap == "DEEP" else swap))
        out.append((f"{'.'.join(map(str, path))} = {str(swap)[:20]}", text.replace('"@DEEP@"', DEEP)))
    return out


def _with_state(data: bytes, state: str, resign: bool) -> bytes:
    _, header, body = _split(data)
    meta = dict(header["__metadata__"], state=state)
    if resign:  # a crafted file: the digest fits the edited state, so only the structure checks stop it
        meta["digest"] = _digest(state, _tensors_of(data))
    return _assemble({**header, "__metadata__": meta}, body)


def _tensors_of(data: bytes):
    from safetensors.torch import load
    return load(data)


def _must_refuse(path, what):
    t0 = time.perf_counter()
    try:
        load_checkpoint(path)
    except CheckpointError as err:
        assert str(path) in str(err), what
        assert len(str(err)) < 800, what  # a crafted value is never dumped whole into the message
    else:
        pytest.fail(f"mutant loaded: {what}")
    assert time.perf_counter() - t0 < 2.0, what


def test_hundreds_of_seeded_mutants_raise_checkpoint_error_in_bounded_time_and_memory(real, tmp_path):
    data, _ = real
    rng = random.Random(1234)
    n, _, _ = _split(data)
    mutants = []
    for cut in sorted(rng.sample(range(len(data)), 60)) + [0, 7, 8, 8 + n - 1, 8 + n, len(data) - 1]:
        mutants.append((f"truncated at {cut}", data[:cut]))
    for where, lo, hi in (("header", 0, 8 + n), ("data", 8 + n, len(data))):
        for _ in range(150 if where == "header" else 100):
            pos, bit = rng.randrange(lo, hi), rng.randrange(8)
            b = bytearray(data)
            b[pos] ^= 1 << bit
            mutants.append((f"bit {bit} of byte {pos} ({where}) flipped", bytes(b)))
    for what, state in _json_mutants(data, rng, 1):  # edits keep the old digest: caught by it
        mutants.append((f"edited, old digest: {what}", _with_state(data, state, resign=False)))
    assert len(mutants) >= 450
    path = tmp_path / "m.safetensors"
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    try:
        for what, blob in mutants:
            path.write_bytes(blob)
            _must_refuse(path, what)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 256 * 2**10  # KiB: < 256 MiB
    path.write_bytes(data)
    assert load_checkpoint(path).epoch == 1  # the intact file still loads


def test_crafted_mutants_with_a_valid_digest_load_cleanly_or_raise_checkpoint_error(real, tmp_path):
    """Edits signed with a fresh digest: loading and resuming either works or raises
    CheckpointError naming the file; never KeyError, TypeError, RuntimeError, RecursionError..."""
    data, _ = real
    rng = random.Random(99)
    refused = resumed = 0
    for i, (what, state) in enumerate(_json_mutants(data, rng, 2)):
        run = tmp_path / f"r{i}"
        (run / "ck").mkdir(parents=True)
        path = run / "ck" / "last.safetensors"
        path.write_bytes(_with_state(data, state, resign=True))
        try:
            ckpt = load_checkpoint(path)
            _fit(run, resume=ckpt)
        except CheckpointError as err:
            assert str(path) in str(err), what
            refused += 1
        except Exception as err:  # noqa: BLE001 — the point of the test
            pytest.fail(f"{what}: {type(err).__name__}: {err}")
        else:
            resumed += 1
    assert refused > 200 and resumed > 0  # most edits break the structure; harmless ones resume


def _padded_checkpoint(target) -> bytes:
    """An intact checkpoint whose header length satisfies ``target(n)`` (padding a string in extra)."""
    for pad in range(0, 40_000, 8):
        ck = Checkpoint(model={"w": torch.ones(3)}, loop={"epoch": 0}, extra={"pad": "a" * pad})
        data = checkpoint_bytes(ck)
        if target(struct.unpack("<Q", data[:8])[0]):
            return data
    raise AssertionError("no padding gives that header length")


@pytest.mark.parametrize("what, target", [
    ("low byte 0x80, a pickle's first byte", lambda n: n % 256 == 0x80),
    ("first bytes 'PK', a zip's signature", lambda n: n % 65536 == 0x4B50),
])
def test_intact_checkpoints_whose_length_looks_like_a_pickle_or_zip_load(tmp_path, what, target):
    data = _padded_checkpoint(target)
    assert data[:1] == b"\x80" or data[:2] == b"PK"
    path = tmp_path / "c.safetensors"
    path.write_bytes(data)
    ck = load_checkpoint(path)
    assert ck.model["w"].tolist() == [1.0, 1.0, 1.0]
    save_checkpoint(path, ck)  # and written again through the atomic writer
    assert load_checkpoint(path).extra == ck.extra


def test_one_in_32_lengths_no_longer_refused(tmp_path):
    """Over many checkpoint sizes, every intact file loads (before the fix, lengths with low byte
    0x80 — one in 32 of the 8-aligned lengths — were refused as pickles)."""
    seen_0x80 = 0
    for pad in range(0, 256 * 4, 8):
        data = checkpoint_bytes(Checkpoint(model={"w": torch.zeros(2)}, extra={"pad": "b" * pad}))
        seen_0x80 += data[0] == 0x80
        p = tmp_path / "c.safetensors"
        p.write_bytes(data)
        load_checkpoint(p)
    assert seen_0x80 >= 3
