import pytest


@pytest.mark.slow  # ~10 s (a server, a client, a second of playing): kept out of the default suite's budget
def test_playground_benchmark_quick(load_benchmark, capsys):
    pytest.importorskip("uvicorn")
    pytest.importorskip("websockets")
    assert load_benchmark("bench_playground").main(["--seconds", "1"]) == 0
    out = capsys.readouterr().out
    assert "frames/s" in out and "steps/s" in out and "fit alone" in out
