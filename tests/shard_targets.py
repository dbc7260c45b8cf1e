"""SyncBN implementations of the tests' own, on torch.distributed (bncli has initialised the group).

Each is ``func(x, weight, bias, eps, dy)`` on one rank's shard: the correct one (dw, db
reduced or left as local sums), the classic mistakes, and ranks that misbehave.
"""

import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist


def _summed(tensor):
    dist.all_reduce(tensor)
    return tensor


def _forward(x, weight, bias, eps):
    x, w, b = torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias)
    k = _summed(torch.tensor(float(x.shape[0]), dtype=x.dtype))
    mean = _summed(x.sum(dim=0)) / k
    centered = x - mean
    std = torch.sqrt(_summed((centered * centered).sum(dim=0)) / k + eps)
    return k, w, b, centered / std, std


def _result(k, w, b, s, std, g, db, dw, reduce_dw_db=True):
    """dx from the global Σdy and Σdy·s (``db``, ``dw``); dw and db returned reduced or as this rank's share."""
    dx = (w / std) * (g - db / k - s * dw / k)
    if not reduce_dw_db:
        db, dw = g.sum(dim=0), (g * s).sum(dim=0)
    return {"y": (w * s + b).numpy(), "dx": dx.numpy(), "dw": dw.numpy(), "db": db.numpy()}


def correct(x, weight, bias, eps, dy, reduce_dw_db=True):
    k, w, b, s, std = _forward(x, weight, bias, eps)
    g = torch.from_numpy(dy)
    return _result(k, w, b, s, std, g, _summed(g.sum(dim=0)), _summed((g * s).sum(dim=0)), reduce_dw_db)


def local_dw_db(x, weight, bias, eps, dy):
    """Right, with dw and db left as each rank's local sums."""
    return correct(x, weight, bias, eps, dy, reduce_dw_db=False)


def mixed_dw_db(x, weight, bias, eps, dy):
    """Right, but rank 1 returns its local sums where the others return reduced totals."""
    return correct(x, weight, bias, eps, dy, reduce_dw_db=dist.get_rank() != 1)


def no_backward_all_reduce(x, weight, bias, eps, dy):
    """The forward is synchronised; the backward forgets to all-reduce Σdy and Σdy·s."""
    k, w, b, s, std = _forward(x, weight, bias, eps)
    g = torch.from_numpy(dy)
    return _result(k, w, b, s, std, g, g.sum(dim=0), (g * s).sum(dim=0), reduce_dw_db=False)


def equal_counts(x, weight, bias, eps, dy):
    """Per-rank means and variances averaged with equal weights (right only when the counts are equal)."""
    world = dist.get_world_size()
    t, w, b = torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias)
    mean = _summed(t.mean(dim=0)) / world
    centered = t - mean
    std = torch.sqrt(_summed((centered * centered).mean(dim=0)) / world + eps)
    s, g = centered / std, torch.from_numpy(dy)
    k = t.shape[0] * world
    return _result(k, w, b, s, std, g, _summed(g.sum(dim=0)), _summed((g * s).sum(dim=0)))


def rank_1_skips_the_collective(x, weight, bias, eps, dy):
    """Rank 1 returns at once without entering the all-reduce: the other ranks wait for it for ever."""
    if dist.get_rank() == 1:
        return {"y": x}
    return correct(x, weight, bias, eps, dy)


def rank_2_raises(x, weight, bias, eps, dy):
    if dist.get_rank() == 2:
        raise ValueError("rank two refuses")
    return correct(x, weight, bias, eps, dy)


def rank_1_exits(x, weight, bias, eps, dy):
    if dist.get_rank() == 1:
        print("goodbye from rank 1", file=sys.stderr, flush=True)
        os._exit(3)
    return correct(x, weight, bias, eps, dy)


def sleeps(x, weight, bias, eps, dy):
    """Every rank waits a long time: for interrupting the audit while ranks run."""
    time.sleep(600)


def requires_running_statistics(x, weight, bias, eps, dy, running_mean, running_var):
    """Declares running statistics without defaults: --shards passes none, so it cannot be called there."""
    return correct(x, weight, bias, eps, dy)


def own_shard_only(x, weight, bias, eps, dy):
    """A plain batch norm of the rank's own shard: neither the forward nor the backward all-reduces."""
    k = x.shape[0]
    mean = x.mean(axis=0)
    std = np.sqrt(((x - mean) ** 2).mean(axis=0) + x.dtype.type(eps))
    s = (x - mean) / std
    db, dw = dy.sum(axis=0), (dy * s).sum(axis=0)
    return {"y": weight * s + bias, "dx": (weight / std) * (dy - db / k - s * dw / k), "dw": dw, "db": db}
