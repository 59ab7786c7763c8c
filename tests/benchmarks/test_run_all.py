"""benchmarks/run_all.py finds every bench_*.py and filters by name."""


def test_run_all_lists_and_filters(load_benchmark, capsys):
    run_all = load_benchmark("run_all")
    assert run_all.main(["--list"]) == 0
    listed = capsys.readouterr().out.split()
    assert {"bench_mnist_mlp.py", "bench_augment.py"} <= set(listed)
    assert all(name.startswith("bench_") for name in listed)
    assert run_all.main(["--only", "no-such-benchmark"]) == 1
