"""Local response normalization (Krizhevsky et al. 2012, Sec. 3.3), in the paper's parametrization.

    b[i] = a[i] / (k + alpha * sum_{j = max(0, i - n/2)}^{min(N - 1, i + n/2)} a[j]^2) ^ beta

torch's nn.LocalResponseNorm computes the same window (n//2 channels before, (n-1)//2 after) but divides
alpha by n; Caffe does too, so "alpha = 1e-4" in a Caffe prototxt is the paper's 2e-5. This class takes the
paper's alpha and hands torch `alpha * n`, so the paper's k=2, n=5, alpha=1e-4, beta=0.75 mean what they say.
"""

from __future__ import annotations

from torch import nn


class LRN(nn.LocalResponseNorm):
    """Across-channel LRN with the paper's constants as defaults (k=2, n=5, alpha=1e-4, beta=0.75)."""

    def __init__(self, n: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75):
        super().__init__(size=n, alpha=alpha * n, beta=beta, k=k)
        self.n, self.paper_alpha = n, alpha

    def extra_repr(self) -> str:
        return f"n={self.n}, k={self.k}, alpha={self.paper_alpha}, beta={self.beta}"
