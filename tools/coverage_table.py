"""Write docs/coverage.md from the notes' coverage table, with trainlab's current status per row.

usage: python tools/coverage_table.py NOTES/COVERAGE.md . tools/coverage_status.json
coverage_status.json holds trainlab's status for each row that changed since the notes' table:
{"A34": {"status": "DONE", "study": "init-tanh-gain", "impl": "...", "test": "...", "note": "..."}}
"""
import json
import re
import sys
from pathlib import Path

src, root, updates_path = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
updates = json.loads(updates_path.read_text()) if updates_path.exists() else {}
text = src.read_text()

MODULE_ALIASES = {"transforms": "optim/transforms", "toy": "data/toy", "verdicts": "diagnostics/verdicts",
                  "trajectories": "experiments/trajectories", "schedules": "schedules", "init": "init",
                  "losses": "losses", "neurons": "diagnostics/neurons", "spectra": "diagnostics/spectra",
                  "gradients": "diagnostics/gradients", "callbacks": "train/callbacks", "loop": "train/loop",
                  "augment": "data/augment", "mnist": "data/mnist", "recorder": "diagnostics/recorder",
                  "landscape": "diagnostics/landscape"}
tests = {p.name: p for p in (root / "tests").rglob("test_*.py")}
studies = {p.stem for p in (root / "studies").glob("*.yaml")}
docs = {p.name for p in (root / "docs").glob("*.md")}


def module_link(token: str) -> str:
    m = re.match(r"\s*([a-z_/]+):", token)
    if not m:
        return token
    mod = m.group(1)
    for cand in (mod, MODULE_ALIASES.get(mod, ""), MODULE_ALIASES.get(mod.split("/")[-1], "")):
        if cand and (root / "src/trainlab" / f"{cand}.py").exists():
            return f"[{token.strip()}](../src/trainlab/{cand}.py)"
    return token


def link_cell(cell: str, kind: str) -> str:
    cell = cell.strip()
    if cell in ("—", "-", "", "same"):
        return cell
    if kind == "impl":
        return "; ".join(module_link(t) for t in cell.split(";"))
    if kind == "test":
        def sub(m):
            name = m.group(1)
            p = tests.get(name)
            return f"[{m.group(0)}](../{p.relative_to(root)})" if p else m.group(0)
        return re.sub(r"(test_[a-z0-9_]+\.py)(::[A-Za-z0-9_]+)?", sub, cell)
    if kind == "study":
        def sub(m):
            name = m.group(0)
            return f"[{name}](../studies/{name}.yaml)" if name in studies else name
        return re.sub(r"[a-z0-9]+(?:-[a-z0-9]+)+", sub, cell)
    if kind == "doc":
        def sub(m):
            return f"[{m.group(1)}]({m.group(1)}{m.group(2) or ''})" if m.group(1) in docs else m.group(0)
        return re.sub(r"docs/([a-z_-]+\.md)(#[a-z0-9-]+)?", lambda m: sub(m), cell)
    return cell


out = ["# Coverage: every item of the notes, and where trainlab has it", "",
       "The notes trainlab is built from (initialization, the gradient-descent family, regularization,",
       "normalization, activations, recurrent nets, and their question lists) are read item by item",
       "here: each technique, claim, worked example and question, with the code that implements it,",
       "the test that proves it, the study that reproduces it, and how it is reached (**cfg**: from a",
       "config file and `trainlab run --set`; **py**: from Python only; **study**: a claim reproduced by `trainlab study NAME`). Status: **DONE** (built, tested",
       "and, for an empirical claim, reproduced by a study), **PARTIAL** (what is missing is said),",
       "**MISSING**. Notes references are `NNN Lxx`: file number and line of the notes. The questions",
       "are answered in [questions.md](questions.md).", ""]
counts = {}
rows_out = []
section = None
for line in text.splitlines():
    if line.startswith("## ") and re.match(r"## [A-KQ]\. ", line):
        section = line
        rows_out.append(("section", line))
        continue
    if line.startswith("## N.") or line.startswith("## Top") or line.startswith("## Summary"):
        section = None
        continue
    if section is None:
        continue
    m = re.match(r"\| ([A-KQ]\d\d) \|", line)
    if not m:
        continue
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
    rid = cells[0]
    if rid.startswith("Q"):
        # ID | Seed ref | Question | Where answered | Status | Note
        _, ref, item, where, status, note = (cells + [""] * 6)[:6]
        up = updates.get(rid, {})
        status = up.get("status", "DONE")
        where = "[questions.md](questions.md)" + (f"; {link_cell(where, 'doc')}" if where and where != "nowhere" and not where.startswith("nowhere") else "")
        note = up.get("note", "")
        rows_out.append(("q", (rid, ref, item, where, status, note)))
    else:
        _, ref, item, impl, test, study, cli, status, note = (cells + [""] * 9)[:9]
        up = updates.get(rid, {})
        impl = up.get("impl", impl)
        test = up.get("test", test)
        study = up.get("study", study)
        cli = up.get("cli", cli)
        if up.get("study") and cli.strip() in ("—", "", "-", "py"):
            cli = "study" if cli.strip() != "py" else "py; study"
        status = up.get("status", status)
        note = up.get("note", note if status != "DONE" or not up else "")
        if status == "WRONG":
            status = "PARTIAL"
        rows_out.append(("a", (rid, ref, item, link_cell(impl, "impl"), link_cell(test, "test"),
                               link_cell(study, "study"), cli, status, note)))
    counts[status] = counts.get(status, 0) + 1

total = sum(counts.values())
out += [f"**{total} rows: " + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("DONE", "PARTIAL", "MISSING")) + ".**", ""]
for kind, data in rows_out:
    if kind == "section":
        out += ["", data, ""]
        if data.startswith("## Q"):
            out += ["| ID | notes | question | answered in | status | note |", "|---|---|---|---|---|---|"]
        else:
            out += ["| ID | notes | item | code | test | study | reach | status | note |",
                    "|---|---|---|---|---|---|---|---|---|"]
        continue
    out.append("| " + " | ".join(data) + " |")
Path(root / "docs/coverage.md").write_text("\n".join(out) + "\n")
print(counts)
