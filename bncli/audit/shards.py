"""Distributed batch norm: the audit's cases split into consecutive shards, one rank per shard.

A plan is a tuple of shard sizes. Each rank runs the target on its shard inside a gloo
process group (:mod:`bncli.audit.shard_worker`), started once per plan and restarted only
after a case that broke it. The ranks' y and dx are put back together row by row and
judged like any other target's; dw and db are taken in the convention the ranks show
(each rank's local sums, whose sum is judged, or already reduced totals, each judged),
and ranks that disagree are named.
"""

from __future__ import annotations

import importlib.util
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import core
from ..errors import InputError
from . import protocol, worker
from .cases import QUANTITIES, CaseInputs
from .findings.variants import distance
from .judge import CaseResult, TargetError, check_outputs
from .reference import reference
from .targets import Target

# --shards auto: even, uneven, with an empty shard, one shard (which must equal the plain audit).
AUTO_PLANS = ((1, 1, 1, 1), (1, 2, 5), (2, 0, 1), (1,))
TORCH_MISSING = "--shards needs PyTorch (torch.distributed): pip install torch"
# Starting a rank imports torch and joins the group: seconds on a loaded machine, whatever --timeout says.
STARTUP_SECONDS = 120.0
# After one rank failed, how long the others may take to return before they are taken as hung on it.
GRACE_SECONDS = 1.0
LOCAL, REDUCED = "local sums", "reduced"


def parse_plans(text) -> tuple[tuple[int, ...], ...]:
    """``auto`` or one comma list of shard sizes (0 allowed, at least one positive); from Python, a
    sequence of sizes too."""
    if not isinstance(text, str):
        text = ",".join(map(str, text)) if isinstance(text, list | tuple) else str(text)
    if text.strip() == "auto":
        return AUTO_PLANS
    try:
        plan = tuple(int(size) for size in text.split(","))
    except ValueError:
        raise InputError(f"--shards {text!r}: expected auto or sizes such as 5,11,0,3") from None
    if any(size < 0 for size in plan) or not any(plan):
        raise InputError(f"--shards {text!r}: sizes are whole numbers ≥ 0, at least one of them positive")
    return (plan,)


def label(plan) -> str:
    return ",".join(str(size) for size in plan)


def split(plan: tuple[int, ...], rows: int) -> tuple[int, ...]:
    """The shard sizes for ``rows`` rows: the plan itself when it adds up to them, else its proportions
    (largest remainders; a 0 stays 0, every other shard keeps ≥ 1 row while there are rows enough)."""
    if sum(plan) == rows:
        return plan
    used = [i for i, size in enumerate(plan) if size]
    if rows < len(used):
        return tuple(int(i in used[:rows]) for i in range(len(plan)))
    quota = [size * rows / sum(plan) for size in plan]
    sizes = [max(1, round(q)) if size else 0 for q, size in zip(quota, plan, strict=True)]
    while sum(sizes) < rows:
        sizes[max(used, key=lambda i: quota[i] - sizes[i])] += 1
    while sum(sizes) > rows:
        sizes[max((i for i in used if sizes[i] > 1), key=lambda i: sizes[i] - quota[i])] -= 1
    return tuple(sizes)


def is_even(sizes) -> bool:
    """Several shards, every one holding rows, the same number of them."""
    return len(sizes) > 1 and len(set(sizes)) == 1 and sizes[0] > 0


def split_alike(sizes, other) -> bool:
    """Both even or both not: only then does one case's verdict tell WRONG from INACCURATE for the other."""
    return is_even(sizes) == is_even(other)


def ranks_with_rows(sizes) -> int:
    return sum(1 for size in sizes if size)


class ShardedTarget(Target):
    """``FILE.py:FUNCTION`` (native style) run on one plan's shards, a process per rank."""

    def __init__(self, spec, plan: tuple[int, ...], layout: str, timeout: float, torchrun: bool = False):
        super().__init__(layout, timeout)
        if not isinstance(spec, str) or spec in ("torch", "bncli") or ":" not in spec:
            raise InputError("--shards audits a FILE.py:FUNCTION or package.module:FUNCTION target")
        if layout != "nc":
            raise InputError("--shards splits the batch of the nc layout; leave --layout out")
        if importlib.util.find_spec("torch") is None:
            raise InputError(TORCH_MISSING)
        self.name, self.plan = spec, plan
        # (case, dtype) → the plan, the split used and the dw/db convention found, for the report
        self.described: dict[tuple[str, str], dict] = {}
        self.remarks: set[str] = set()  # lines for the diagnosis: ranks whose dw/db convention differs
        self.ranks = TorchrunRanks(spec) if torchrun else LocalRanks(spec, len(plan), self.timeout)
        self._own_shards_seen = False

    def call(self, inputs: CaseInputs):
        sizes = split(self.plan, inputs.x.shape[0])
        about = {"plan": list(self.plan), "split": list(sizes), "dw_db": None, "disagreeing": []}
        self.described[(inputs.name, inputs.dtype)] = about
        shards = [replace(inputs, x=inputs.x[rows], dy=inputs.dy[rows]) for rows in _rows(sizes)]
        replies = self.ranks.run([self.arguments(shard) for shard in shards])
        per_rank = []
        for rank, (shard, (_, value, changed)) in enumerate(zip(shards, replies, strict=True)):
            self.note_changed(changed, inputs)
            try:
                per_rank.append(check_outputs(value, shard, "nc"))
            except TargetError as error:
                raise TargetError(f"rank {rank}: {error}") from None
        assembled = self._assembled(per_rank, inputs, sizes, about)
        self._note_own_shards(assembled, inputs, sizes)
        return assembled

    def _note_own_shards(self, assembled: dict, inputs: CaseInputs, sizes) -> None:
        """A remark, once per plan, where y is each rank's batch norm of its own shard alone: nothing is
        all-reduced, so y is wrong too and the backward's finding (y right, dx wrong) cannot name it."""
        if self._own_shards_seen or ranks_with_rows(sizes) < 2:
            return
        alone, ref = own_shards(inputs, sizes), reference(inputs)
        matched = [
            q for q in ("y", "dx") if q in assembled and distance(q, assembled[q], alone, ref, inputs) is not None
        ]
        if "y" in matched:
            self._own_shards_seen = True
            self.remarks.add(
                f"plan {label(self.plan)}: {', '.join(matched)} {'is' if len(matched) == 1 else 'are'} each rank's "
                f"batch norm of its own shard alone (first seen on {inputs.name}/{inputs.dtype}): nothing is "
                "all-reduced; all-reduce the counts, Σx and Σ(x − m)² in the forward (m and v over the rows of all "
                "ranks) and Σdy, Σdy·x̂ in the backward"
            )

    def _assembled(self, per_rank: list[dict], inputs: CaseInputs, sizes, about: dict) -> dict:
        names = _returned_by_all(per_rank)
        assembled = {q: np.concatenate([outputs[q] for outputs in per_rank]) for q in ("y", "dx") if q in names}
        sums = [q for q in ("dw", "db") if q in names]
        if sums:
            convention, disagreeing, chosen = _dw_db(per_rank, sums, inputs, sizes)
            about.update(dw_db=convention, disagreeing=disagreeing)
            assembled.update(chosen)
            if disagreeing:
                other = REDUCED if convention == LOCAL else LOCAL
                self.remarks.add(
                    f"plan {label(self.plan)}: rank {', '.join(map(str, disagreeing))} returned dw, db as {other} "
                    f"while the others returned {convention} (first seen on {inputs.name}/{inputs.dtype})"
                )
        return assembled

    def close(self) -> None:
        self.ranks.close()


def own_shards(inputs: CaseInputs, sizes) -> dict[str, np.ndarray]:
    """y and dx of a plain batch norm of each shard alone, in float64, put back together row by row."""
    x, g = inputs.x.astype(np.float64), inputs.dy.astype(np.float64)
    weight, bias = inputs.weight.astype(np.float64), inputs.bias.astype(np.float64)
    parts = {"y": [], "dx": []}
    for rows in _rows(sizes):
        if rows.stop > rows.start:
            bn = core.forward(x[rows], weight, bias, inputs.eps)
            parts["y"].append(bn.y)
            parts["dx"].append(core.backward(g[rows], bn).dx)
    return {name: np.concatenate(blocks) for name, blocks in parts.items()}


def _returned_by_all(per_rank: list[dict]) -> list[str]:
    """The quantities the ranks returned; a TargetError when some returned one that others did not."""
    names = [q for q in QUANTITIES if any(q in outputs for outputs in per_rank)]
    for name in names:
        lacking = [rank for rank, outputs in enumerate(per_rank) if name not in outputs]
        if lacking:
            raise TargetError(f"rank {', '.join(map(str, lacking))} returned no {name} while others did")
    return names


def _rows(sizes) -> list[slice]:
    """Each shard's consecutive rows of the batch."""
    ends = np.cumsum(sizes).tolist()
    return [slice(end - size, end) for size, end in zip(sizes, ends, strict=True)]


def _dw_db(per_rank: list[dict], names: list[str], inputs: CaseInputs, sizes):
    """The convention most ranks follow, the ranks that follow the other, and dw, db to judge:
    the sum of local sums, or the reduced value of the rank farthest from the exact one."""
    ref = reference(inputs)
    x, g = inputs.x.astype(np.float64), inputs.dy.astype(np.float64)
    s = core.forward(x, inputs.weight.astype(np.float64), inputs.bias.astype(np.float64), inputs.eps).s
    shares = [{"dw": (g[rows] * s[rows]).sum(axis=0), "db": g[rows].sum(axis=0)} for rows in _rows(sizes)]

    def distance(rank: int, exact) -> float:
        with np.errstate(invalid="ignore", over="ignore"):
            errors = [np.abs(per_rank[rank][q] - exact(q)) / ref.scales[q] for q in names]
        return float(np.nanmax(np.concatenate(errors), initial=0.0))

    to_total = [distance(r, lambda q: ref.values[q]) for r in range(len(per_rank))]
    to_share = [distance(r, lambda q, r=r: shares[r][q]) for r in range(len(per_rank))]
    looks = [REDUCED if t < s else LOCAL if s < t else None for t, s in zip(to_total, to_share, strict=True)]
    convention = LOCAL if looks.count(LOCAL) > looks.count(REDUCED) else REDUCED
    disagreeing = [rank for rank, seen in enumerate(looks) if seen not in (None, convention)]
    if convention == LOCAL:
        chosen = {q: np.sum([outputs[q] for outputs in per_rank], axis=0) for q in names}
    else:
        farthest = int(np.argmax(to_total))
        chosen = {q: per_rank[farthest][q] for q in names}
    return convention, disagreeing, chosen


class LocalRanks:
    """One worker process per rank on this machine, all in one process group (killed as one),
    joined into a gloo group over a file store in a temporary folder (no port to collide with)."""

    def __init__(self, spec: str, world: int, timeout: float | None):
        self.spec, self.world, self.timeout = spec, world, timeout
        self.processes: list[subprocess.Popen] = []
        self.folder: str | None = None
        self.limit = protocol.ENVELOPE  # a reply's longest, set for each case's arguments

    def _start(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="bncli-shards-")
        package_root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
        env = {"GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", **os.environ, "PYTHONPATH": path}
        store = os.path.join(self.folder, "store")
        for rank in range(self.world):
            group = self.processes[0].pid if self.processes else 0  # one group of their own, killed as one
            argv = ["--rank", str(rank), "--world", str(self.world), "--store", store]
            with open(os.path.join(self.folder, f"stderr-{rank}"), "wb") as stderr:
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "bncli.audit.shard_worker", self.spec, *argv],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=stderr,
                        env=env,
                        process_group=group,
                    )
                )
            os.set_blocking(self.processes[-1].stdin.fileno(), False)  # requests are written within a deadline
        replies, failures, silent = self._collect(max(self.timeout or 0, STARTUP_SECONDS))
        refused = [reply[1] for reply in failures.values() if reply[0] == "input-error"]
        if refused or failures or silent:
            message = refused[0] if refused else f"starting the ranks: {self._failure(failures, silent, None)}"
            self.close()
            raise InputError(message if refused else f"target {self.spec!r}: {message}")

    def run(self, arguments: list[tuple]) -> list[tuple]:
        """Each rank's ("ok", value, changed) for its arguments, or a TargetError naming the ranks that failed."""
        if not self.processes:
            self._start()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        for process, args in zip(self.processes, arguments, strict=True):
            try:
                protocol.send_request(process.stdin.fileno(), args, deadline)
            except (OSError, protocol.TimedOut):
                pass  # the rank is gone or stopped reading: collecting says how
        self.limit = protocol.reply_limit(max(2 * args[0].size + 2 * args[1].size for args in arguments))
        replies, failures, silent = self._collect(self.timeout)
        if failures or silent:
            self.close()  # the group is broken (ranks wait in a collective): the next case starts a new one
            raise TargetError(self._failure(failures, silent, self.timeout))
        return [replies[rank] for rank in range(self.world)]

    def _collect(self, timeout: float | None):
        """Every rank's next message until ``timeout`` (shortened once one rank has failed): the
        replies, the failures by rank (a reply other than ok/ready, or how the process ended), and
        the ranks that sent nothing."""
        streams = {process.stdout: rank for rank, process in enumerate(self.processes)}
        replies, failures = {}, {}
        deadline = None if timeout is None else time.monotonic() + timeout
        while streams:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            ready, _, _ = select.select(list(streams), [], [], left)
            for stream in ready:
                rank = streams.pop(stream)
                message = self._receive(rank, stream)
                if message[0] in ("ok", "ready"):
                    replies[rank] = message
                else:
                    failures[rank] = message
                    deadline = min(deadline or math.inf, time.monotonic() + GRACE_SECONDS)
        return replies, failures, sorted(streams.values())

    def _receive(self, rank: int, stream) -> tuple:
        try:
            reply = protocol.receive_reply(stream, None, self.limit)
        except protocol.UnreadableReply as error:
            return ("unusable", str(error))
        if reply is not None:
            return _as_tuple(reply)
        status = self.processes[rank].wait()
        how = f"was killed by signal {-status}" if status < 0 else f"ended the process (exit status {status})"
        last = self._last_stderr_line(rank)
        return ("ended", how + (f"; its last stderr line: {last}" if last else ""))

    def _last_stderr_line(self, rank: int) -> str:
        text = Path(self.folder, f"stderr-{rank}").read_bytes().decode("utf-8", "replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1][:200] if lines else ""

    def _failure(self, failures: dict, silent: list[int], timeout: float | None) -> str:
        verbs = {"raised": "raised ", "ended": "", "unusable": "", "input-error": ""}
        parts = [f"rank {rank} {verbs.get(reply[0], '')}{reply[1]}" for rank, reply in sorted(failures.items())]
        if silent:
            ranks = f"rank{'s' if len(silent) > 1 else ''} {', '.join(map(str, silent))}"
            if failures:
                parts.append(f"{ranks} did not return (waiting on the failed rank: killed)")
            else:
                waited = "" if timeout is None else f" after {timeout:g} s"
                parts.append(f"timed out{waited}: {ranks} did not return")
        return "; ".join(parts)

    def close(self) -> None:
        """Kill every rank (their process group) and remove the store."""
        if self.processes:
            try:
                os.killpg(self.processes[0].pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            for process in self.processes:
                process.wait()
                for stream in (process.stdin, process.stdout):
                    stream.close()
        self.processes = []
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


class TorchrunRanks:
    """This process is one rank of torchrun's group: it calls the target on its own shard, and every
    rank gets every rank's reply (torch.distributed.all_gather_object)."""

    def __init__(self, spec: str):
        import torch.distributed as dist

        self.dist, self.func = dist, worker.load_rank_function(spec)

    def run(self, arguments: list[tuple]) -> list[tuple]:
        dist = self.dist
        if len(arguments) != dist.get_world_size():
            raise InputError(f"--shards gives {len(arguments)} shards for {dist.get_world_size()} torchrun ranks")
        replies: list = [None] * len(arguments)
        dist.all_gather_object(replies, _as_tuple(worker._call(self.func, arguments[dist.get_rank()])))
        failed = [f"rank {rank} {reply[1]}" for rank, reply in enumerate(replies) if reply[0] != "ok"]
        if failed:
            raise TargetError("; ".join(failed))
        return replies

    def close(self) -> None:
        """torchrun owns the processes."""


def _as_tuple(reply: protocol.Reply) -> tuple:
    """("ok", outputs, changed) or (kind, text): how the ranks' replies are handled here."""
    if reply.kind == "ok":
        return ("ok", reply.outputs, reply.changed)
    return (reply.kind,) if reply.kind == "ready" else (reply.kind, reply.text)


def plan_findings(results: list[CaseResult]) -> list[str]:
    """What the verdicts across plans show: right on even shards but wrong on uneven ones (counts
    not weighted), or y right and dx wrong only on several ranks (Σdy and Σdy·x̂ not all-reduced)."""
    by_case: dict[tuple[str, str], list[CaseResult]] = {}
    for result in results:
        if result.shards and not result.error:
            by_case.setdefault((result.name, result.dtype), []).append(result)
    uneven = {f"{name}/{dtype}" for (name, dtype), runs in by_case.items() if _right_on_even_only(runs)}
    local_backward = {f"{name}/{dtype}" for (name, dtype), runs in by_case.items() if _dx_wrong_on_several(runs)}
    lines = []
    if uneven:
        lines.append(
            f"right on even shards, wrong on uneven ones ({_shown(uneven)}): the per-rank means and variances are "
            "averaged as if every rank held the same number of rows; weight them by the counts k_r: "
            "m = Σ k_r·m_r / Σ k_r, v = Σ k_r·(v_r + (m_r − m)²) / Σ k_r (an empty rank contributes nothing)"
        )
    if local_backward:
        lines.append(
            f"dx wrong whenever the batch is split over several ranks while y is right ({_shown(local_backward)}): "
            "the backward uses each rank's own Σdy and Σdy·x̂; all-reduce both, then "
            "dx = (w/σ)·(dy − Σdy/k − x̂·Σ(dy·x̂)/k) with k the rows of all ranks"
        )
    return lines


def _right_on_even_only(runs: list[CaseResult]) -> bool:
    even_passes = any(is_even(r.shards["split"]) and r.verdict == "PASS" for r in runs)
    return even_passes and any(not is_even(r.shards["split"]) and _fails(r, "y", "dx") for r in runs)


def _dx_wrong_on_several(runs: list[CaseResult]) -> bool:
    """dx fails on some split over several ranks, y on none, and dx passes wherever one rank holds every row."""
    several = [r for r in runs if ranks_with_rows(r.shards["split"]) > 1]
    one = [r for r in runs if ranks_with_rows(r.shards["split"]) == 1]
    return (
        any(_fails(r, "dx") for r in several)
        and not any(_fails(r, "y") for r in several)
        and not any(_fails(r, "dx") for r in one)
    )


def _fails(result: CaseResult, *names: str) -> bool:
    return any(result.quantities[q].verdict in ("WRONG", "INACCURATE") for q in names if q in result.quantities)


def _shown(where: set[str]) -> str:
    cases = sorted(where)
    return ", ".join(cases[:3]) + (f" and {len(cases) - 3} more" if len(cases) > 3 else "")
