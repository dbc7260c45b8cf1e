"""bncli benchmarks: every goal of the performance issue, each side by side with its peer.

    python bench/run.py --setup      # once: bench/.venv with bncli, torch 2.13.0, pandas, polars
    bench/.venv/bin/python bench/run.py [--quick] [--rows version,small,big,core,check,fast,scaling,accuracy,wide]

The two sides of a row run interleaved (A B A B …) and the medians are compared, so
that a noisy machine slows both alike. Rows whose peer is not installed say so.
This is a benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
VENV = ROOT / "bench" / ".venv"
PYTHON = sys.executable
BNCLI = str(Path(PYTHON).parent / "bncli")

PEER_SCRIPT = """
import sys, numpy as np, pandas as pd, polars as pl
x = pd.read_csv(sys.argv[1]).to_numpy()
y = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
pl.from_numpy(y).write_csv(sys.argv[2])
"""
# The fastest script a user could write with polars alone (issue "hostile input", #13): no validation.
POLARS_SCRIPT = """
import sys, numpy as np, polars as pl
frame = pl.read_csv(sys.argv[1])
x = frame.to_numpy()
y = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
pl.from_numpy(y, schema=frame.columns).write_csv(sys.argv[2])
"""
NUMPY_SCRIPT = """
import sys, numpy as np
x = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1)
y = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
np.savetxt(sys.argv[2], y, delimiter=",", fmt="%.17g")
"""


def setup() -> None:
    """bench/.venv: bncli and the peers it is measured against.

    bncli is installed as a user would (not editable), so that its modules are
    byte-compiled like typer's and numpy's; run --setup again after a change.
    """
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0", "pandas", "polars"], check=True)
    subprocess.run([*pip, "--force-reinstall", "--no-deps", str(ROOT)], check=True)
    subprocess.run([*pip, str(ROOT)], check=True)
    print(f"ready: {VENV / 'bin' / 'python'} bench/run.py")


def has(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


# ---------------------------------------------------------------------------- timing


TIME = shutil.which("time") and "/usr/bin/time"


def run_once(command: list[str]) -> tuple[float, float]:
    """Wall time (s) and peak RSS (MB) of one process.

    The peak is measured by /usr/bin/time, which starts the command from its own small
    process: a child forked from this one would start from this process's peak (Linux
    keeps the high-water mark across fork), and the benchmark holds hundreds of MB.
    """
    measured = [TIME, "-f", "bench-peak-kb %M", *command] if TIME else command
    start = time.perf_counter()
    process = subprocess.Popen(measured, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode()
    process.stderr.close()
    if process.returncode not in (0,):
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}: {stderr[-500:]}")
    peaks = [line.split()[1] for line in stderr.splitlines() if line.startswith("bench-peak-kb ")]
    return elapsed, (int(peaks[-1]) if peaks else usage.ru_maxrss) / 1024


def interleaved(a: list[str], b: list[str], repeats: int) -> tuple[dict, dict]:
    sides = {"a": [], "b": []}
    for _ in range(repeats):
        for key, command in (("a", a), ("b", b)):
            sides[key].append(run_once(command))
    return tuple(
        {"time": statistics.median(t for t, _ in runs), "rss": statistics.median(r for _, r in runs)}
        for runs in (sides["a"], sides["b"])
    )


def paired(a: list[str], b: list[str], repeats: int) -> tuple[dict, dict, float]:
    """:func:`interleaved`, plus the median of the ratios a/b of each pair of runs made back to
    back: a slow or quick spell of a busy machine then falls on both sides of a ratio alike."""
    pairs = [(run_once(a), run_once(b)) for _ in range(repeats)]
    sides = tuple(
        {
            "time": statistics.median(runs[side][0] for runs in pairs),
            "rss": statistics.median(runs[side][1] for runs in pairs),
        }
        for side in (0, 1)
    )
    return *sides, statistics.median(ours[0] / theirs[0] for ours, theirs in pairs)


def median_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


MISSED: list[str] = []


def judged(name: str, value: float, goal: str) -> str:
    """``goal`` ("≤ 1.3", "≥ 200") with whether ``value`` meets it; a miss is remembered for the summary."""
    relation, bound = goal.split()
    met = value <= float(bound) if relation == "≤" else value >= float(bound)
    if not met:
        MISSED.append(f"{name.strip()}: {value:.3g}, goal {goal}")
    return f"goal {goal} {'met' if met else 'MISSED'}"


def report(name: str, ours: float, peer: float, goal: str, unit: str = "s", ratio: float | None = None) -> None:
    """One row: medians of both sides and their ratio (or ``ratio``, e.g. the median of paired ratios)."""
    ratio = ours / peer if ratio is None else ratio
    verdict = judged(name, ratio, goal)
    print(f"  {name:<52} bncli {ours:8.3f} {unit}   peer {peer:8.3f} {unit}   ratio {ratio:6.2f}   {verdict}")


# ------------------------------------------------------------------------------ data


def make_data(quick: bool) -> dict[str, Path]:
    DATA.mkdir(parents=True, exist_ok=True)
    small = DATA / "small.csv"
    small.write_text("a,b\n1,2\n3,5\n4,4\n")
    rows = 200_000 if quick else 1_000_000
    big = DATA / f"big_{rows}.csv"
    if not big.exists():
        from bncli.io import write

        rng = np.random.default_rng(0)
        x = rng.standard_normal((rows, 10)) * np.logspace(-3, 6, 10) + np.linspace(0, 1e7, 10)
        with open(big, "wb") as stream:
            write.write_delimited(stream, x, [f"c{i}" for i in range(10)], ",")
    return {"small": small, "big": big}


# ------------------------------------------------------------------------------ rows


def row_version(files, repeats):
    print("start-up")
    ours, peer = interleaved([BNCLI, "--version"], [PYTHON, "-c", "import typer"], repeats)
    report("bncli --version  vs  python -c 'import typer'", ours["time"], peer["time"], "≤ 1.3")


def row_small(files, repeats):
    ours, peer = interleaved(
        [BNCLI, "forward", str(files["small"]), "-f", "csv"], [PYTHON, "-c", "import numpy, typer"], repeats
    )
    report("bncli forward small.csv -f csv  vs  import numpy, typer", ours["time"], peer["time"], "≤ 1.3")


def row_big(files, repeats):
    big = files["big"]
    size = big.stat().st_size / 1e6
    print(f"CSV throughput: {big.name} ({size:.0f} MB)")
    out = tempfile.mkdtemp()
    ours_cmd = [BNCLI, "forward", str(big), "-o", f"{out}/ours.csv"]
    if has("pandas") and has("polars"):
        ours, peer = interleaved(ours_cmd, [PYTHON, "-c", PEER_SCRIPT, str(big), f"{out}/peer.csv"], repeats)
        report("forward big.csv -o out.csv  vs  pandas → numpy → polars", ours["time"], peer["time"], "≤ 1.5")
        report("  peak RSS (MB)", ours["rss"], peer["rss"], "≤ 1.0", "MB")
    else:
        ours, _ = interleaved(ours_cmd, ours_cmd, 1)
        print("  pandas/polars peer missing: run bench/run.py --setup")
    if has("polars"):
        polars_only = [PYTHON, "-c", POLARS_SCRIPT, str(big), f"{out}/polars.csv"]
        pairs = max(5, repeats)
        ours, fastest, ratio = paired(ours_cmd, polars_only, pairs)
        name = "forward big.csv -o out.csv  vs  polars alone (no checks)"
        report(name, ours["time"], fastest["time"], "≤ 1.2", ratio=ratio)
        print(f"  {'':<52} ratio: the median of {pairs} paired runs")
        report("  peak RSS (MB)", ours["rss"], fastest["rss"], "≤ 1.0", "MB")
    slow, _ = run_once([PYTHON, "-c", NUMPY_SCRIPT, str(big), f"{out}/numpy.csv"])
    faster = slow / ours["time"]
    verdict = judged("np.loadtxt + np.savetxt, times bncli", faster, "≥ 5")
    print(f"  {'np.loadtxt + np.savetxt (one run)':<52} {slow:8.3f} s   bncli is {faster:.1f}× faster   {verdict}")
    shutil.rmtree(out)


def row_core(files, repeats):
    from bncli import core

    print("core forward + backward, float64, in process (torch: 1 thread)")
    torch = __import__("torch") if has("torch") else None
    if torch is not None:
        torch.set_num_threads(1)
    for k, n in ((65536, 64), (1_000_000, 16)):
        rng = np.random.default_rng(0)
        x, g = rng.standard_normal((k, n)) * 3 + 1, rng.standard_normal((k, n))
        w, b = rng.uniform(0.5, 2, n), rng.standard_normal(n)
        xf, gf = np.asfortranarray(x), np.asfortranarray(g)  # the layout bncli's readers produce

        def ours():
            bn = core.forward(xf, w, b)
            bn.y  # made on first use: the output is part of the work, as for torch
            core.backward(gf, bn)

        floor = np.empty_like(xf)
        copy = median_time(lambda: np.copyto(floor, xf), repeats)
        if torch is None:
            print(f"  {k}×{n}: bncli {median_time(ours, repeats):.3f} s; torch missing: run bench/run.py --setup")
            continue
        xt, gt = torch.tensor(x), torch.tensor(g)
        wt, bt = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)

        def theirs():
            leaf = xt.detach().requires_grad_(True)
            torch.nn.functional.batch_norm(leaf, None, None, wt, bt, training=True, eps=1e-5).backward(gt)

        times = {"ours": [], "theirs": []}
        for _ in range(repeats):
            times["ours"].append(median_time(ours, 1))
            times["theirs"].append(median_time(theirs, 1))
        a, t = statistics.median(times["ours"]), statistics.median(times["theirs"])
        report(f"{k}×{n}  vs  torch batch_norm + autograd", a, t, "≤ 0.9")
        print(f"  {'':<52} np.copyto of x: {copy * 1e3:.1f} ms; bncli = {a / copy:.1f} copies")


def _check_inputs(k, n, seed=0, scaled=True):
    from bncli import core
    from bncli import gradcheck as gc

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((k, n)) * (np.logspace(-3, 9, n) if scaled else 1.0) + (1e3 if scaled else 0.0)
    w, b = rng.uniform(0.5, 2, n), rng.standard_normal(n)
    dy = rng.standard_normal((k, n))
    bn = core.forward(x, w, b)
    grads = core.backward(dy, bn)
    problem = gc.Problem(x, dy, w, b, 1e-5)
    return problem, grads, bn


def row_check(files, repeats):
    from bncli import core
    from bncli import gradcheck as gc

    print("full gradient check (dx, dw, db and every column's Jacobian), in process")
    k, n = 128, 32
    for label, scaled in (("unit-scale data", False), ("columns from 1e-3 to 1e9", True)):
        problem, grads, bn = _check_inputs(k, n, scaled=scaled)
        jac = {c: core.jacobian(bn, c) for c in range(n)}
        gradient = gc.CheckedGradients(grads.dx, grads.dw, grads.db, jac)
        ours = median_time(lambda: gc.check_gradients(problem, gradient), repeats)
        verdict = "PASS" if gc.check_gradients(problem, gradient).passed else "FAIL"
        if not has("torch"):
            print(f"  {k}×{n}, {label}: bncli {ours:.3f} s ({verdict}); torch missing: run bench/run.py --setup")
            continue
        import torch

        torch.set_num_threads(1)
        inputs = tuple(torch.tensor(a, requires_grad=True) for a in (problem.x, problem.weight, problem.bias))

        def fn(x, w, b):
            return torch.nn.functional.batch_norm(x, None, None, w, b, training=True, eps=1e-5)

        start = time.perf_counter()
        theirs_verdict = "PASS" if torch.autograd.gradcheck(fn, inputs, raise_exception=False) else "FAIL"
        theirs = time.perf_counter() - start
        # Issue 17: ≥ 100× (the second step for the truncation estimate doubled the full check's cost).
        goal = judged(f"full check {label}, times faster than torch", theirs / ours, "≥ 100")
        print(
            f"  {k}×{n}, {label}: bncli {ours * 1e3:.1f} ms ({verdict})   torch.autograd.gradcheck "
            f"{theirs * 1e3:.0f} ms ({theirs_verdict})   bncli {theirs / ours:.0f}× faster   {goal}"
        )


def row_fast(files, repeats):
    big = files["big"]
    print(f"fast check on {big.name}")
    out = tempfile.mkdtemp()
    ours, peer = interleaved(
        [BNCLI, "grad", str(big), "--check", "--fast", "-o", f"{out}/a.csv"],
        [BNCLI, "grad", str(big), "-o", f"{out}/b.csv"],
        repeats,
    )
    report("grad --check --fast  vs  grad", ours["time"], peer["time"], "≤ 3")
    shutil.rmtree(out)


def row_scaling(files, repeats):
    from bncli import gradcheck as gc

    print("check cost versus k and n (dx, dw, db; in process)")
    print(f"  {'k × n':>14} {'full':>10} {'fast (8 probes)':>18} {'full / k²n (ns)':>16}")
    for k, n in (
        (100, 10),
        (300, 10),
        (1000, 10),
        (1000, 100),
        (3000, 10),
        (10_000, 10),
        (100_000, 10),
        (1_000_000, 10),
    ):
        problem, grads, _ = _check_inputs(k, n)
        gradient = gc.CheckedGradients(grads.dx, grads.dw, grads.db)
        fast = median_time(lambda: gc.check_gradients(problem, gradient, probes=8), max(1, repeats // 2))
        if k * k * n <= 1e9:
            full = median_time(lambda: gc.check_gradients(problem, gradient), 1)
            print(f"  {f'{k} × {n}':>14} {full:9.3f}s {fast:17.3f}s {full / (k * k * n) * 1e9:16.2f}")
        else:
            print(f"  {f'{k} × {n}':>14} {'(skipped)':>10} {fast:17.3f}s")


def row_accuracy(files, repeats):
    from bncli import core
    from bncli import gradcheck as gc

    print("accuracy of correct gradients: max relative error (natural scale) by method and dtype")
    for k in (10, 100, 1000, 10_000, 100_000):
        problem, grads, _ = _check_inputs(k, 4, seed=k)
        probes = None if k <= 1000 else 8
        cells = []
        for method in ("central", "complex"):
            report = gc.check_gradients(problem, gc.CheckedGradients(dx=grads.dx), method=method, probes=probes)
            cells.append(f"{method} {report.results['dx'].max_rel_error:.1e}")
        x32 = problem.x.astype(np.float32)
        dy32 = problem.dy.astype(np.float32)
        w32, b32 = problem.weight.astype(np.float32), problem.bias.astype(np.float32)
        g32 = core.backward(dy32, core.forward(x32, w32, b32))
        p32 = gc.Problem(x32.astype(float), dy32.astype(float), w32.astype(float), b32.astype(float), 1e-5)
        report = gc.check_gradients(p32, gc.CheckedGradients(dx=g32.dx.astype(float)), probes=probes)
        cells.append(f"float32 {report.results['dx'].max_rel_error:.1e}")
        print(f"  k = {k:>7}{' (probes)' if probes else '         '}  " + "   ".join(cells))


def row_wide(files, repeats):
    """A wide file (2 rows × 10⁶ columns) against a tall one of the same size: the reader and
    writer are chosen by shape, so both take time and memory in proportion to their bytes."""
    columns = 200_000 if files["big"].name == "big_200000.csv" else 1_000_000
    wide, tall = DATA / f"wide_2x{columns}.csv", DATA / f"tall_as_wide_2x{columns}.csv"
    if not (wide.exists() and tall.exists()):
        # In a child process: a child's peak RSS starts from its parent's at fork.
        script = (
            "import sys, numpy as np; from bncli.io import write\n"
            "rng = np.random.default_rng(1); n = int(sys.argv[3])\n"
            "for path, shape in ((sys.argv[1], (2, n)), (sys.argv[2], (2 * n // 10, 10))):\n"
            "    with open(path, 'wb') as stream: write.write_delimited(stream, rng.standard_normal(shape), None, ',')"
        )
        subprocess.run([PYTHON, "-c", script, str(wide), str(tall), str(columns)], check=True)
    size = wide.stat().st_size / 1e6
    print(f"wide against tall: {wide.name} ({size:.0f} MB) and {tall.name} ({tall.stat().st_size / 1e6:.0f} MB)")
    out = tempfile.mkdtemp()
    ours, peer = interleaved(
        [BNCLI, "forward", str(wide), "-o", f"{out}/wide.csv"],
        [BNCLI, "forward", str(tall), "-o", f"{out}/tall.csv"],
        repeats,
    )
    report("forward wide.csv  vs  forward tall.csv (same bytes)", ours["time"], peer["time"], "≤ 5")
    report("  peak RSS (MB)", ours["rss"], peer["rss"], "≤ 3", "MB")
    print(f"  {'peak RSS / file size, wide':<52} {ours['rss'] / size:8.1f}×   tall {peer['rss'] / size:.1f}×")
    shutil.rmtree(out)


ROWS = {
    "version": row_version,
    "small": row_small,
    "big": row_big,
    "core": row_core,
    "check": row_check,
    "fast": row_fast,
    "scaling": row_scaling,
    "accuracy": row_accuracy,
    "wide": row_wide,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true", help="create bench/.venv with bncli and the peers")
    parser.add_argument("--quick", action="store_true", help="smaller data and fewer repeats")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma list of rows to run")
    args = parser.parse_args()
    if args.setup:
        setup()
        return
    if not Path(BNCLI).exists():
        sys.exit(f"no bncli next to {PYTHON}; install it in this environment (or use --setup)")
    repeats = 5 if args.quick else 15
    import platform

    machine = platform.processor() or platform.machine()
    print(f"{machine}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}")
    files = make_data(args.quick)
    for name in args.rows.split(","):
        ROWS[name](files, repeats if name in ("version", "small") else max(3, repeats // 3))
    if MISSED:
        print(f"\n{len(MISSED)} goal(s) MISSED:")
        for line in MISSED:
            print(f"  {line}")
        sys.exit(1)
    print("\nevery goal met")


if __name__ == "__main__":
    main()
