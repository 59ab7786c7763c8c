import pytest


@pytest.fixture(autouse=True)
def _isolated_results_store(tmp_path_factory, monkeypatch):
    # 'trainlab run' and 'trainlab sweep' record into a results store (default runs/trainlab.sqlite
    # under the working folder); tests keep theirs in a temporary folder
    monkeypatch.setenv("TRAINLAB_STORE", str(tmp_path_factory.mktemp("store") / "trainlab.sqlite"))


@pytest.fixture
def cli(tmp_path):
    """Run the real ``trainlab`` entry point in a subprocess: ``cli("run", "--out", "r", timeout=120)``.

    The console script installed beside the test interpreter is used, so what is tested is what a user
    types. The working folder is ``tmp_path`` (so ``runs/`` lands there), one torch thread keeps the
    suite quiet on a small machine, and the results store is the test's own. Returns the
    ``CompletedProcess`` with text ``stdout``/``stderr``.
    """
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("trainlab")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "trainlab"]

    def run(*args, timeout=300, input=None, env=None, cwd=None):
        full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
                    "TRAINLAB_STORE": str(tmp_path / "store" / "trainlab.sqlite"), **(env or {})}
        return subprocess.run(command + [str(a) for a in args], cwd=cwd or tmp_path, env=full_env,
                              input=input, capture_output=True, text=True, timeout=timeout)

    return run
