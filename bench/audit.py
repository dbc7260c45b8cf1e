"""bncli audit: budget calibration and speed (a benchmark, not a test: nothing here asserts).

    .venv/bin/python bench/audit.py calibrate   # max error/(u·scale) per quantity, per implementation
    .venv/bin/python bench/audit.py speed       # the default battery on a numpy target; --cmd per case; --shards
    .venv/bin/python bench/audit.py torch       # bncli audit torch against --style torch of a module

calibrate runs correct implementations (bncli's core, PyTorch if installed, the
textbook two-pass numpy of examples/batchnorm_numpy.py, the mixed-precision numpy of
examples/batchnorm_mixed.py, and the C example when ``cc`` exists) on every case, in every
dtype each computes in, every layout, training and eval mode, and prints the largest error
of each quantity in units of its budget over C_q (u·scale; in a half precision, y's and dx's
last rounding beside float32's arithmetic): the C_q of
bncli.audit.reference.BUDGET_MULTIPLES must sit above these with a margin.
"""

from __future__ import annotations

import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bncli.audit import cases, judge, reference, targets, worker  # noqa: E402
from bncli.audit.run import AuditOptions, run_audit  # noqa: E402
from bncli.options import AUDIT_DTYPES, DTYPES, LAYOUTS  # noqa: E402

EXAMPLE = f"{ROOT / 'examples' / 'batchnorm_numpy.py'}:batchnorm"
SYNCBN = f"{ROOT / 'examples' / 'syncbn_torch.py'}:syncbn"


def _compiled_example(folder: str) -> str | None:
    if shutil.which("cc") is None:
        return None
    binary = str(Path(folder) / "batchnorm")
    subprocess.run(["cc", "-O2", "-o", binary, str(ROOT / "examples" / "batchnorm.c"), "-lm"], check=True)
    return binary


MIXED = f"{ROOT / 'examples' / 'batchnorm_mixed.py'}:batchnorm"


def _implementations(folder: str) -> dict[str, tuple]:
    """label: (target, cmd, layouts, extremes, dtypes, training modes). The textbook numpy computes in its
    input's dtype, so it is calibrated in float64 and float32 only; in the half ones the mixed-precision
    numpy is. Those that take ``training`` are calibrated in eval mode too."""
    both = (True, False)
    found = {
        "bncli": ("bncli", None, LAYOUTS, True, AUDIT_DTYPES, both),
        "numpy": (EXAMPLE, None, ("nc", "nchw"), False, DTYPES, (True,)),
        "numpy-nhwc": (f"{EXAMPLE}_nhwc", None, ("nhwc",), False, DTYPES, (True,)),
        "numpy-mixed": (MIXED, None, ("nc", "nchw"), False, AUDIT_DTYPES, both),
        "numpy-mixed-nhwc": (f"{MIXED}_nhwc", None, ("nhwc",), False, AUDIT_DTYPES, both),
    }
    try:
        import torch  # noqa: F401

        found["torch"] = ("torch", None, LAYOUTS, False, AUDIT_DTYPES, both)
    except ImportError:
        print("torch not installed: calibrating without it")
    binary = _compiled_example(folder)
    if binary:
        found["C"] = (None, binary, ("nc",), False, DTYPES, (True,))
    return found


def _in_units(name: str, value, inputs, ref) -> float:
    """The largest error of ``value`` in units of its budget over C_q (u·scale; a half precision's last
    rounding beside float32's arithmetic): what C_q must stay above."""
    error = np.abs(value - ref.values[name]) / ref.scales[name]
    units = reference.element_budgets(name, inputs.dtype, ref) / reference.BUDGET_MULTIPLES[name]
    return float(np.max(error / units))


def calibrate() -> None:
    """Largest error/(budget/C_q) per quantity and dtype over the default cases (extremes: bncli only),
    training and eval mode."""
    with tempfile.TemporaryDirectory() as folder:
        worst: dict[tuple[str, str, str], tuple[float, str]] = {}
        for label, (target, cmd, layouts, extremes, dtypes, modes) in _implementations(folder).items():
            for layout in layouts:
                resolved = targets.resolve(target, cmd=cmd, layout=layout, timeout=60)
                for case in cases.list_cases(extreme=extremes):
                    for dtype, training in itertools.product(dtypes, modes):
                        inputs = replace(case.inputs(dtype), training=training)
                        ref = reference.reference(inputs)
                        outputs = judge.check_outputs(resolved.call(inputs), inputs, layout)
                        for name, value in outputs.items():
                            if not reference.representable(name, ref, dtype):
                                continue
                            key = (label, name, dtype)
                            error = _in_units(name, value, inputs, ref)
                            if error > worst.get(key, (-1.0, ""))[0]:
                                worst[key] = (error, f"{case.name}/{layout}{'' if training else '/eval'}")
                resolved.close()
        print(f"{'implementation':<15}{'quantity':<13}{'dtype':<9}{'max error/(budget/C_q)':>23}  where   (C_q)")
        for (label, name, dtype), (value, where) in sorted(worst.items()):
            print(f"{label:<15}{name:<13}{dtype:<9}{value:>23.3g}  {where}   ({reference.BUDGET_MULTIPLES[name]:g})")
        for dtype in AUDIT_DTYPES:
            for name in cases.JUDGED:
                values = [v for (_, q, d), (v, _) in worst.items() if q == name and d == dtype]
                if values:
                    budget = reference.BUDGET_MULTIPLES[name]
                    top = max(values)
                    margin = f"{budget / top:.2g}×" if top > 0 else "unbounded (every error 0)"
                    print(f"{dtype:<9}{name:<13} max {top:.3g}, C = {budget:g}, margin {margin}")


def speed(repeats: int = 5) -> None:
    """The default battery (both dtypes, nc) on the numpy example, minus the target's own compute time."""
    func = worker.load_function(EXAMPLE)
    spent = [0.0]

    def timed(*args):
        start = time.perf_counter()
        try:
            return func(*args)
        finally:
            spent[0] += time.perf_counter() - start

    totals, own = [], []
    for _ in range(repeats):
        spent[0] = 0.0
        start = time.perf_counter()
        report = run_audit(AuditOptions(target=timed))
        totals.append(time.perf_counter() - start)
        own.append(spent[0])
    overhead = [t - o for t, o in zip(totals, own, strict=True)]
    case_runs = len(report.cases)
    print(
        f"default battery ({case_runs} case runs + self-consistency), numpy target: "
        f"median {statistics.median(totals):.3f} s total, {statistics.median(own):.3f} s inside the target, "
        f"{statistics.median(overhead):.3f} s bncli "
        f"(goal ≤ 3 s); verdict {report.verdict}"
    )
    in_worker = []
    for _ in range(repeats):
        start = time.perf_counter()
        report = run_audit(AuditOptions(target=EXAMPLE))  # as the command line runs it
        in_worker.append(time.perf_counter() - start)
    print(
        f"the same, FILE.py:FUNCTION in a worker process (as bncli audit runs it): "
        f"median {statistics.median(in_worker):.3f} s total, target included (goal ≤ 3 s); verdict {report.verdict}"
    )
    _sharded_speed(repeats)
    with tempfile.TemporaryDirectory() as folder:
        binary = _compiled_example(folder)
        if binary is None:
            print("--cmd: no cc, skipped")
            return
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            report = run_audit(AuditOptions(cmd=binary, consistency=False))
            times.append(time.perf_counter() - start)
        runs = len(report.cases)
        per_case = (statistics.median(times) - statistics.median(overhead)) / runs
        print(
            f"--cmd with the C example: median {statistics.median(times):.3f} s for {runs} case runs, "
            f"{1e3 * per_case:.1f} ms per case beyond the in-process audit (write inputs, start, read outputs); "
            f"verdict {report.verdict}"
        )


def _command_cost(args: list[str]) -> tuple[float, float, int]:
    """Wall seconds and peak resident MB of ``bncli ARGS`` as a process (the largest of it and the
    workers it reaped, as /usr/bin/time's %M), and its exit status."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "bncli", *args, "-f", "json"], stdout=subprocess.DEVNULL, cwd=ROOT
    )
    _, status, usage = os.wait4(process.pid, 0)
    return time.perf_counter() - start, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def torch_speed(repeats: int = 5) -> None:
    """The default battery on PyTorch's own batch norm (in bncli's process) and on a torch module in the
    torch style (in the worker process, built fresh for every call): the goal is at most 2× the time."""
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch not installed: pip install torch==2.13.0")
        return
    rows = {
        "bncli audit torch": ["audit", "torch"],
        "bncli audit --style torch examples/torch_module.py:BatchNorm": [
            "audit", "--style", "torch", "examples/torch_module.py:BatchNorm",
        ],
    }  # fmt: skip
    medians = {}
    for label, args in rows.items():
        runs = [_command_cost(args) for _ in range(repeats)]
        wall, peak = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        medians[label] = wall
        print(f"{label}: median {wall:.2f} s wall, {peak:.0f} MB peak over {repeats} runs; exit {runs[-1][2]}")
    base, styled = medians.values()
    print(f"--style torch / torch: {styled / base:.2f}× (goal ≤ 2×)")


def _sharded_speed(repeats: int) -> None:
    """--shards 5,11,0,3 on examples/syncbn_torch.py: four ranks started once, the default battery on them."""
    try:
        import torch  # noqa: F401
    except ImportError:
        print("--shards: torch not installed, skipped")
        return
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        report = run_audit(AuditOptions(target=SYNCBN, shards="5,11,0,3"))
        times.append(time.perf_counter() - start)
    print(
        f"--shards 5,11,0,3 (4 gloo ranks) with examples/syncbn_torch.py: median {statistics.median(times):.3f} s "
        f"for {len(report.cases)} case runs, ranks started included (goal ≤ 15 s); verdict {report.verdict}"
    )


if __name__ == "__main__":
    {"calibrate": calibrate, "speed": speed, "torch": torch_speed}[sys.argv[1] if len(sys.argv) > 1 else "speed"]()
