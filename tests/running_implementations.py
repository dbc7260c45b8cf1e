"""Batch norms that keep running statistics, each with one mistake the audit must name.

Each declares the keyword parameters it wants of ``running_mean``, ``running_var``, ``momentum`` and
``training``, for ``bncli audit tests/running_implementations.py:NAME``.
"""

import numpy as np


def _layer(x, weight, bias, eps, dy, mean, var):
    """y, dx, dw, db normalized with ``mean`` and ``var``; ``batch``: they are x's own (training mode)."""
    k = x.shape[0]
    std = np.sqrt(var + x.dtype.type(eps))
    s = (x - mean) / std
    db, dw = dy.sum(axis=0), (dy * s).sum(axis=0)
    return weight * s + bias, (weight / std) * (dy - db / k - s * dw / k), dw, db


def _eval_layer(x, weight, bias, eps, dy, mean, var):
    std = np.sqrt(var + x.dtype.type(eps))
    s = (x - mean) / std
    return weight * s + bias, (weight / std) * dy, (dy * s).sum(axis=0), dy.sum(axis=0)


def _batch_statistics(x):
    mean = x.mean(axis=0)
    return mean, ((x - mean) ** 2).mean(axis=0)


def _result(outputs, running_mean, running_var):
    y, dx, dw, db = outputs
    return {"y": y, "dx": dx, "dw": dw, "db": db, "running_mean": running_mean, "running_var": running_var}


def correct(x, weight, bias, eps, dy, running_mean, running_var, momentum, training):
    """PyTorch's rule: momentum on the new batch, the unbiased batch variance; eval mode from the running ones."""
    if not training:
        return _result(_eval_layer(x, weight, bias, eps, dy, running_mean, running_var), running_mean, running_var)
    mean, var = _batch_statistics(x)
    k = x.shape[0]
    new_mean = (1 - momentum) * running_mean + momentum * mean
    new_var = (1 - momentum) * running_var + momentum * var * (k / (k - 1))
    return _result(_layer(x, weight, bias, eps, dy, mean, var), new_mean, new_var)


def biased_running_var(x, weight, bias, eps, dy, running_mean, running_var, momentum):
    """The running variance updated with the biased batch variance."""
    mean, var = _batch_statistics(x)
    new_mean = (1 - momentum) * running_mean + momentum * mean
    new_var = (1 - momentum) * running_var + momentum * var
    return _result(_layer(x, weight, bias, eps, dy, mean, var), new_mean, new_var)


def keras_momentum(x, weight, bias, eps, dy, running_mean, running_var, momentum):
    """Keras's convention: momentum is the weight of the old statistics."""
    mean, var = _batch_statistics(x)
    k = x.shape[0]
    new_mean = momentum * running_mean + (1 - momentum) * mean
    new_var = momentum * running_var + (1 - momentum) * var * (k / (k - 1))
    return _result(_layer(x, weight, bias, eps, dy, mean, var), new_mean, new_var)


def batch_statistics_always(x, weight, bias, eps, dy, training=True):
    """Ignores the mode: normalizes with the batch's statistics in eval mode too (and keeps none)."""
    mean, var = _batch_statistics(x)
    return _layer(x, weight, bias, eps, dy, mean, var)


def declares_but_never_returns(x, weight, bias, eps, dy, running_mean, running_var):
    """Takes the running statistics and returns none of them."""
    mean, var = _batch_statistics(x)
    return _layer(x, weight, bias, eps, dy, mean, var)


def training_only_keyword(x, weight, bias, eps, dy, *, training):
    """Declares only ``training``: it must be passed that alone (any other keyword is a TypeError)."""
    if training is not True:
        raise ValueError(f"training is {training!r} in the default (training) audit")
    mean, var = _batch_statistics(x)
    return _layer(x, weight, bias, eps, dy, mean, var)
