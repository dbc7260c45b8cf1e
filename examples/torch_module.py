"""A batch-norm layer written as a torch module, its parameters gamma and beta of shape (1, C).

bncli audit --style torch examples/torch_module.py:BatchNorm       # built as BatchNorm(C, eps=eps)
bncli audit examples/torch_module.py:BatchNorm --dtype all         # float16 and bfloat16 too
"""

import torch
from torch import nn


class BatchNorm(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.gamma = nn.Parameter(torch.ones(1, num_features))
        self.beta = nn.Parameter(torch.zeros(1, num_features))
        self.register_buffer("running_mean", torch.zeros(1, num_features))
        self.register_buffer("running_var", torch.ones(1, num_features))

    def forward(self, x):
        # Mixed precision as PyTorch's own kernels: a half-precision x is normalized in the parameters'
        # dtype (float32), and y rounded back to x's dtype at the end.
        given, x = x.dtype, x.to(self.gamma.dtype)
        if self.training:
            mean = x.mean(0, keepdim=True)
            var = x.var(0, keepdim=True, unbiased=False)
            with torch.no_grad():
                n = x.shape[0]
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var * n / max(n - 1, 1), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return (self.gamma * (x - mean) / torch.sqrt(var + self.eps) + self.beta).to(given)
