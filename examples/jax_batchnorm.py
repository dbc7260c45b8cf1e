"""Batch norm as a jax function; bncli takes its backward from jax.vjp, in 64-bit mode.

bncli audit --style jax examples/jax_batchnorm.py:batchnorm
"""

import jax.numpy as jnp


def batchnorm(x, weight, bias, eps):
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    return weight * (x - mean) / jnp.sqrt(var + eps) + bias
