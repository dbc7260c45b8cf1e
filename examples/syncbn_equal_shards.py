"""The naive SyncBN: per-rank means and variances averaged as if every rank held the same number of rows.

bncli audit examples/syncbn_equal_shards.py:syncbn --shards auto    # right on even shards only: WRONG

Each rank computes the mean of its own rows and averages the ranks' means with equal
weights; the variance likewise, about that mean. With equal counts this is exactly the
batch's statistics; with unequal ones it is not, and an empty rank's mean is 0/0 = NaN.
The fix is in examples/syncbn_torch.py: all-reduce the counts and weight by them.
"""

import torch
import torch.distributed as dist


def _averaged(tensor):
    dist.all_reduce(tensor)
    return tensor / dist.get_world_size()  # the mistake: every rank weighs the same


def syncbn(x, weight, bias, eps, dy):
    x, dy = torch.from_numpy(x), torch.from_numpy(dy)
    w, b = torch.from_numpy(weight), torch.from_numpy(bias)
    k = x.shape[0] * dist.get_world_size()  # the same mistake, in the count
    mean = _averaged(x.mean(dim=0))
    centered = x - mean
    var = _averaged((centered * centered).mean(dim=0))
    std = torch.sqrt(var + eps)
    s = centered / std
    db = dy.sum(dim=0)
    dw = (dy * s).sum(dim=0)
    dist.all_reduce(db)
    dist.all_reduce(dw)
    dx = (w / std) * (dy - db / k - s * dw / k)
    return {"y": (w * s + b).numpy(), "dx": dx.numpy(), "dw": dw.numpy(), "db": db.numpy()}
