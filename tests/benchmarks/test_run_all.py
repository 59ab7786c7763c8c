"""benchmarks/run_all.py finds every bench_*.py and filters by name."""


def test_run_all_lists_and_filters(load_benchmark, capsys):
    run_all = load_benchmark("run_all")
    assert run_all.main(["--list"]) == 0
    listed = capsys.readouterr().out.split()
    assert {"bench_mnist_mlp.py", "bench_augment.py"} <= set(listed)
    assert all(name.startswith("bench_") for name in listed)
    assert run_all.main(["--only", "no-such-benchmark"]) == 1


def test_ratio_lines_make_one_table(load_benchmark, tmp_path):
    run_all = load_benchmark("run_all")
    assert run_all.parse_ratio("speed-up 3.0x") is None
    a = run_all.parse_ratio("RATIO sweep.moons 6.25 >= 10", "bench_sweep")
    b = run_all.parse_ratio("RATIO mnist.fit_vs_loader 0.61 <= 0.65\n", "bench_mnist_mlp")
    assert (a.name, a.value, a.op, a.goal, a.ok) == ("sweep.moons", 6.25, ">=", 10.0, False)
    assert b.ok
    lines = run_all.table([a, b])
    assert len(lines) == 3 and lines[1].split()[-1] == "NO" and lines[2].split()[-1] == "yes"
    assert "| bench_sweep | `sweep.moons` | 6.250 | >= 10 | no |" in run_all.markdown([a, b])
