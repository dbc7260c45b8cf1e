"""A correct synchronised batch norm (SyncBN) on torch.distributed: each rank holds some rows of the batch.

bncli audit examples/syncbn_torch.py:syncbn --shards auto       # even, uneven, an empty shard, one shard: PASS
bncli audit examples/syncbn_torch.py:syncbn --shards 2,3 --dtype all    # float16 and bfloat16 too

bncli has initialised the process group before the call (gloo, one rank per shard). The
statistics are weighted by the counts: the global count and Σx are all-reduced, then
Σ(x − m)² about the global mean (two passes, no cancellation). The backward all-reduces
Σdy and Σdy·x̂, so dw and db come back already reduced, the same on every rank. A rank
with no rows contributes zeros to every sum and gets empty y and dx, never NaNs.
"""

import torch
import torch.distributed as dist


def _all_reduced(tensor):
    dist.all_reduce(tensor)  # a sum over the ranks
    return tensor


def syncbn(x, weight, bias, eps, dy):
    # In the parameters' dtype: float32 beside a float16 or bfloat16 x (mixed precision; y and dx come back
    # wider than x, which is allowed), so the sums are float32's too.
    x, dy = (torch.from_numpy(a.astype(weight.dtype)) for a in (x, dy))
    w, b = torch.from_numpy(weight), torch.from_numpy(bias)
    k = _all_reduced(torch.tensor(float(x.shape[0]), dtype=torch.float64))
    mean = _all_reduced(x.sum(dim=0)) / k.to(x.dtype)
    centered = x - mean
    var = _all_reduced((centered * centered).sum(dim=0)) / k.to(x.dtype)
    std = torch.sqrt(var + eps)
    s = centered / std
    db = _all_reduced(dy.sum(dim=0))
    dw = _all_reduced((dy * s).sum(dim=0))
    dx = (w / std) * (dy - db / k.to(x.dtype) - s * dw / k.to(x.dtype))
    return {"y": (w * s + b).numpy(), "dx": dx.numpy(), "dw": dw.numpy(), "db": db.numpy()}
