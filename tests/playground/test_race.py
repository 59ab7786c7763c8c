"""Race mode's two live runs share one process and so torch's global RNG: each draws what it draws alone."""
from __future__ import annotations

import threading
import time

from trainlab.playground.live import DEFAULTS, LiveRun, _checksum

# dropout draws a mask from the global RNG at every step: any draw of one run landing in the
# other's stream (or in its build) changes that run's weights
SETTINGS = dict(DEFAULTS, n=120, batch_size="10", hidden="16,16", dropout=0.3, seed=3)
STEPS = 40


class Watched:
    """A live run and the first frame it published."""

    def __init__(self, runs_root):
        self.first: dict | None = None
        self.errors: list[str] = []
        self.run = LiveRun(self._emit, runs_root=runs_root)

    def _emit(self, m):
        if m.get("type") == "frame" and self.first is None:
            self.first = m
        if m.get("type") == "error":
            self.errors.append(m["message"])

    def wait_first(self, limit=60.0):
        end = time.monotonic() + limit
        while self.first is None:
            assert not self.errors, self.errors
            assert time.monotonic() < end, f"no frame after {limit} s"
            time.sleep(0.01)
        return self.first

    def wait_steps(self, n, limit=120.0):
        end = time.monotonic() + limit
        while self.run.step_count < n or self.run.pending_steps:
            assert not self.errors, self.errors
            assert time.monotonic() < end, f"{self.run.step_count} of {n} steps after {limit} s"
            time.sleep(0.01)


def side_by_side(*messages):
    threads = [threading.Thread(target=w.run.handle, args=(m,)) for w, m in messages]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_two_runs_built_and_stepped_at_once_equal_their_solo_runs(tmp_path):
    solo = Watched(tmp_path)
    solo.run.handle({"type": "init", "settings": SETTINGS})
    start = solo.wait_first()["checksum"]
    solo.run.handle({"type": "step", "n": STEPS})
    solo.wait_steps(STEPS)
    alone = _checksum(solo.run.model)
    solo.run.close()

    for _ in range(3):  # builds and steps that overlap differently each time
        a, b = Watched(tmp_path), Watched(tmp_path)
        side_by_side((a, {"type": "init", "settings": SETTINGS}), (b, {"type": "init", "settings": SETTINGS}))
        assert a.wait_first()["checksum"] == b.wait_first()["checksum"] == start  # one initialization
        side_by_side((a, {"type": "step", "n": STEPS}), (b, {"type": "step", "n": STEPS}))
        a.wait_steps(STEPS)
        b.wait_steps(STEPS)
        assert _checksum(a.run.model) == _checksum(b.run.model) == alone  # the same dropout masks as alone
        a.run.close()
        b.run.close()


def test_both_runs_of_a_race_advance_while_playing(tmp_path):
    a, b = Watched(tmp_path), Watched(tmp_path)
    side_by_side((a, {"type": "init", "settings": SETTINGS}), (b, {"type": "init", "settings": SETTINGS}))
    side_by_side((a, {"type": "play"}), (b, {"type": "play"}))
    time.sleep(3.0)
    side_by_side((a, {"type": "pause"}), (b, {"type": "pause"}))
    na, nb = a.run.step_count, b.run.step_count
    a.run.close()
    b.run.close()
    assert not a.errors and not b.errors
    assert min(na, nb) >= 0.5 * max(na, nb) > 0, (na, nb)  # taking turns at the RNG starves neither
