"""One rank of a sharded audit (``python -m bncli.audit.shard_worker FILE.py:FUNCTION ...``).

Started by bncli (``--rank R --world W --store FILE``): the process joins a gloo process
group over a file store, then calls the target on each shard bncli sends it on stdin
(the protocol of :mod:`bncli.audit.worker`: replies of plain arrays) and replies on stdout;
the target's prints go to stderr.

Started by ``torchrun`` (``RANK`` and ``WORLD_SIZE`` in the environment, no ``--rank``):
every rank joins torchrun's process group, builds the same battery, calls the target on
its own shard and hands its results to rank 0, where bncli's driver judges them and
prints the report (see the README's "Distributed batch norm").
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import InputError
from . import protocol, worker


def _die_with_parent() -> None:
    """A rank that the driver leaves behind (even killed with SIGKILL) is killed too, on Linux."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _serve(spec: str, rank: int, world: int, store: str) -> None:
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)  # the target's prints go to stderr
    try:
        func = worker.load_rank_function(spec)
    except InputError as error:
        protocol.send_reply(replies, protocol.Reply("input-error", str(error)))
        return
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)  # one process per shard already uses every core
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    protocol.send_reply(replies, protocol.Reply("ready"))
    while (args := protocol.receive_request(requests)) is not None:
        protocol.send_reply(replies, worker._call(func, args))  # plain arrays: nothing of the target's own


def _torchrun(arguments: list[str]) -> int:
    """Every rank of torchrun runs the audit; rank 0 prints the report and gives the exit status."""
    import torch.distributed as dist

    from .run import AuditOptions, run_audit

    parser = argparse.ArgumentParser(prog="python -m bncli.audit.shard_worker")
    parser.add_argument("target")
    parser.add_argument("--case", action="append", default=[])
    parser.add_argument("--dtype", action="append", default=[])
    parser.add_argument("--shards", default=None, help="sizes, one per rank (default: even)")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    parsed = parser.parse_args(arguments)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    options = AuditOptions(
        target=parsed.target,
        cases=tuple(parsed.case),
        dtypes=tuple(parsed.dtype) or ("float64", "float32"),
        timeout=parsed.timeout,
        consistency=False,
        shards=parsed.shards or ",".join(["1"] * world),
        torchrun=True,
    )
    try:
        report = run_audit(options)
    finally:
        dist.destroy_process_group()
    if rank:
        return 0  # every rank has the same report; rank 0 prints it
    if parsed.json:
        import json

        print(json.dumps(report.json, indent=2))
    else:
        print(report.text)
    return 0 if report.passed else 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bncli.audit.shard_worker")
    parser.add_argument("target")
    parser.add_argument("--rank", type=int)
    parser.add_argument("--world", type=int)
    parser.add_argument("--store")
    known, rest = parser.parse_known_args()
    if known.rank is None:
        if "RANK" not in os.environ:
            sys.exit("python -m bncli.audit.shard_worker: run it under torchrun, or let bncli audit --shards start it")
        sys.exit(_torchrun(sys.argv[1:]))
    _die_with_parent()
    _serve(known.target, known.rank, known.world, known.store)


if __name__ == "__main__":
    main()
