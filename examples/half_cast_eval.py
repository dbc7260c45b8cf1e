"""examples/batchnorm_mixed.py with one mistake: in eval mode it casts the running statistics to the
input's dtype first, as `model.half()` or a compiler that lowers every parameter does. Above 65504 a
float16 running variance is inf, and y silently becomes b.

bncli audit examples/half_cast_eval.py:batchnorm --dtype float16 --eval    # WRONG, the cast named
bncli audit examples/half_cast_eval.py:batchnorm --dtype float16           # PASS: training is right
"""

from batchnorm_mixed import batchnorm as mixed_precision


def batchnorm(x, weight, bias, eps, dy, running_mean, running_var, momentum, training):
    if training:
        return mixed_precision(x, weight, bias, eps, dy, running_mean, running_var, momentum, training)
    lowered = [statistic.astype(x.dtype).astype(weight.dtype) for statistic in (running_mean, running_var)]
    result = mixed_precision(x, weight, bias, eps, dy, *lowered, momentum, training)
    return {**result, "running_mean": running_mean, "running_var": running_var}  # its buffers stay as they were
