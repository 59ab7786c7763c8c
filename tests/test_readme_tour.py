"""The README's tour works as written: every command and every Python block, in the order given.

It trains the quickstart four times (about a minute on a busy machine), so it is marked slow:
``pytest -m slow tests/test_readme_tour.py``.
"""
import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def tour_blocks() -> list[tuple[str, str]]:
    """``(language, text)`` of every fenced block of the "A short tour" section, in order."""
    text = README.read_text()
    section = text[text.index("## A short tour"):text.index("## Documentation")]
    return re.findall(r"```(\w+)\n(.*?)```", section, re.S)


def test_the_tour_has_python_commands_and_a_config():
    kinds = [k for k, _ in tour_blocks()]
    assert kinds.count("python") == 2 and kinds.count("yaml") == 1 and kinds.count("bash") >= 2


@pytest.mark.slow
def test_the_readme_tour_runs_as_written(tmp_path, monkeypatch, cli):
    import torch

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for kind, body in tour_blocks():
        if kind == "python":
            exec(compile(body, "README.md", "exec"), namespace)
        elif kind == "yaml":
            (tmp_path / "exp.yaml").write_text(body)
        elif kind == "bash":
            for line in body.splitlines():
                command = line.split("  #")[0].strip()
                if not command.startswith("trainlab"):
                    continue  # `source .venv/bin/activate`: the cli fixture calls the installed script
                res = cli(*shlex.split(command)[1:])
                assert res.returncode == 0, f"{command}\n{res.stderr}"
    assert (tmp_path / "moons.html").is_file() and (tmp_path / "runs" / "adam" / "model.pt").is_file()
    assert namespace["run"].predict(torch.zeros(1, 2)).dtype == torch.int64
