"""Attention pooling as kernel regression (chapters 2-3).

Average pooling, Nadaraya-Watson regression with a choice of kernels, and its learnable
form with one inverse bandwidth.
"""
from __future__ import annotations

from typing import Callable, Union

import torch
from torch import Tensor, nn

__all__ = [
    "gaussian_kernel",
    "boxcar_kernel",
    "epanechnikov_kernel",
    "KERNELS",
    "average_pooling",
    "nadaraya_watson_weights",
    "nadaraya_watson",
    "leave_one_out",
    "NWKernelRegression",
]

Kernel = Union[str, Callable[[Tensor], Tensor]]


def gaussian_kernel(u: Tensor) -> Tensor:
    """Gaussian kernel K(u) = exp(-u^2/2), chapter 2, eq. (kernels).

    Shapes: u (...) -> (...).
    """
    return torch.exp(-(u**2) / 2)


def boxcar_kernel(u: Tensor) -> Tensor:
    """Boxcar kernel K(u) = 1 if |u| <= 1 else 0, chapter 2, eq. (kernels).

    Shapes: u (...) -> (...).
    """
    return (u.abs() <= 1).to(u.dtype)


def epanechnikov_kernel(u: Tensor) -> Tensor:
    """Epanechnikov K(u) = 3/4 (1 - u^2) if |u| <= 1 else 0, chapter 2, eq. (kernels).

    Shapes: u (...) -> (...).
    """
    return torch.where(u.abs() <= 1, 0.75 * (1 - u**2), torch.zeros_like(u))


KERNELS: dict[str, Callable[[Tensor], Tensor]] = {
    "gaussian": gaussian_kernel,
    "boxcar": boxcar_kernel,
    "epanechnikov": epanechnikov_kernel,
}


def _check_1d(name: str, t: Tensor) -> None:
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D (n,), got shape {tuple(t.shape)}")


def _check_keys(queries: Tensor, keys: Tensor) -> None:
    _check_1d("queries", queries)
    if not isinstance(keys, Tensor):
        raise ValueError(f"keys must be a torch.Tensor, got {type(keys).__name__}")
    n_q = queries.shape[0]
    if keys.dim() == 1:
        if keys.shape[0] == 0:
            raise ValueError("keys must hold at least one key, got shape (0,)")
    elif keys.dim() == 2:
        if keys.shape[0] != n_q or keys.shape[1] == 0:
            raise ValueError(
                f"per-query keys must have shape (n_q, n_k) = ({n_q}, n_k >= 1), "
                f"got keys {tuple(keys.shape)} for queries {tuple(queries.shape)}"
            )
    else:
        raise ValueError(
            f"keys must be (n_k,) or (n_q, n_k), got shape {tuple(keys.shape)}"
        )


def _check_bandwidth(bandwidth: float) -> None:
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth!r}")


def _kernel_function(kernel: Kernel) -> Callable[[Tensor], Tensor]:
    """The kernel named by a key of KERNELS, or the callable given."""
    if isinstance(kernel, str) and kernel in KERNELS:
        return KERNELS[kernel]
    if callable(kernel) and not isinstance(kernel, str):
        return kernel
    raise ValueError(
        f"kernel must be one of {sorted(KERNELS)} or a callable, got {kernel!r}"
    )


def average_pooling(queries: Tensor, values: Tensor) -> Tensor:
    """Average pooling f(q) = mean_i y_i, blind to q, chapter 2, eq. (average-pooling).

    Shapes: queries (n_q,), values (n,) -> (n_q,).
    """
    _check_1d("queries", queries)
    _check_1d("values", values)
    if values.numel() == 0:
        raise ValueError("values must hold at least one value, got shape (0,)")
    return values.mean().expand(queries.shape[0]).clone()  # (n_q,)


def nadaraya_watson_weights(
    queries: Tensor, keys: Tensor, kernel: Kernel = "gaussian", bandwidth: float = 1.0
) -> Tensor:
    """Nadaraya-Watson attention weights, chapter 2, eq. (nw-weights).

    Shapes: queries (n_q,), keys (n_k,) or (n_q, n_k) -> (n_q, n_k).
    """
    _check_keys(queries, keys)
    _check_bandwidth(bandwidth)
    kernel_fn = _kernel_function(kernel)
    if keys.dim() == 1:
        keys = keys.unsqueeze(0)  # (1, n_k): broadcast the shared keys over queries
    u = (queries.unsqueeze(-1) - keys) / bandwidth  # (n_q, n_k)
    if kernel_fn is gaussian_kernel:
        # exp(-u^2/2) normalised is a softmax; the softmax subtracts the row max,
        # so a tiny h never gives 0/0.
        return torch.softmax(-(u**2) / 2, dim=-1)  # (n_q, n_k)
    k = kernel_fn(u)  # (n_q, n_k)
    if k.shape != u.shape:
        raise ValueError(
            f"kernel must be elementwise, expected output shape {tuple(u.shape)}, "
            f"got {tuple(k.shape)}"
        )
    total = k.sum(dim=-1, keepdim=True)  # (n_q, 1)
    empty = total.squeeze(-1) <= 0  # (n_q,)
    if bool(empty.any()):
        raise ValueError(
            f"{int(empty.sum())} of {queries.shape[0]} queries have no key within "
            f"the kernel's window (all weights are zero at bandwidth {bandwidth}); "
            "use a larger bandwidth"
        )
    return k / total  # (n_q, n_k)


def nadaraya_watson(
    queries: Tensor,
    keys: Tensor,
    values: Tensor,
    kernel: Kernel = "gaussian",
    bandwidth: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Nadaraya-Watson regression f(q) = sum_i alpha(q, k_i) y_i, chapter 2, eq. (nw).

    Shapes: queries (n_q,), keys and values (n_k,) or (n_q, n_k) -> (n_q,), (n_q, n_k).
    """
    _check_same_shape(keys, values)
    weights = nadaraya_watson_weights(
        queries, keys, kernel=kernel, bandwidth=bandwidth
    )  # (n_q, n_k)
    if values.dim() == 1:
        y_hat = weights @ values  # (n_q, n_k) @ (n_k,) -> (n_q,)
    else:
        y_hat = (weights * values).sum(dim=-1)  # (n_q, n_k) -> (n_q,)
    return y_hat, weights


def leave_one_out(x_train: Tensor, y_train: Tensor) -> tuple[Tensor, Tensor]:
    """Keys and values without pair i in row i, chapter 3, eq. (eq-loo-loss).

    Shapes: x_train, y_train (n,) -> keys (n, n-1), values (n, n-1).
    """
    _check_training_pairs(x_train, y_train)
    n = x_train.shape[0]
    # Without this, query i would find its own key at distance 0 and learn h -> 0
    # (pure memorisation).
    keep = ~torch.eye(n, dtype=torch.bool, device=x_train.device)  # (n, n)
    keys = x_train.expand(n, n)[keep].reshape(n, n - 1)  # (n, n-1)
    values = y_train.expand(n, n)[keep].reshape(n, n - 1)  # (n, n-1)
    return keys, values


class NWKernelRegression(nn.Module):
    """Learnable Nadaraya-Watson, w = 1/h (d2l's model), chapter 3, eq. (eq-param-nw).

    Shapes: queries (n,), keys and values (n, m) or (m,) -> (n,).
    """

    def __init__(self, bandwidth: float = 1.0) -> None:
        super().__init__()
        _check_bandwidth(bandwidth)
        self.w = nn.Parameter(torch.tensor([1.0 / bandwidth]))  # (1,)
        self.attention_weights: Tensor | None = None

    @property
    def bandwidth(self) -> float:
        """The bandwidth h = 1/|w| that the model has learned, chapter 3."""
        return 1.0 / abs(self.w.item())

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        """f(q) = sum_i softmax_i(-((q - k_i) w)^2/2) v_i, chapter 3, eq. (eq-param-nw).

        Shapes: queries (n,), keys and values (n, m) or (m,) -> (n,).
        """
        _check_nw_inputs(queries, keys, values)
        n = queries.shape[0]
        if keys.dim() == 1:
            keys = keys.expand(n, -1)  # (m,) -> (n, m): every query sees the same keys
            values = values.expand(n, -1)  # (m,) -> (n, m)
        scores = -(((queries.unsqueeze(-1) - keys) * self.w) ** 2) / 2  # (n, m)
        self.attention_weights = torch.softmax(scores, dim=-1)  # (n, m)
        # (n, 1, m) @ (n, m, 1) -> (n, 1, 1): one weighted sum of values per query
        out = torch.bmm(self.attention_weights.unsqueeze(1), values.unsqueeze(-1))
        return out.reshape(-1)  # (n, 1, 1) -> (n,)


def _check_nw_inputs(queries: Tensor, keys: Tensor, values: Tensor) -> None:
    _check_1d("queries", queries)
    if keys.shape != values.shape:
        raise ValueError(
            "keys and values must have the same shape, "
            f"got keys {tuple(keys.shape)} and values {tuple(values.shape)}"
        )
    _check_keys(queries, keys)


def _check_same_shape(keys: object, values: object) -> None:
    if (not isinstance(values, Tensor) or not isinstance(keys, Tensor)
            or keys.shape != values.shape):
        raise ValueError(
            "keys and values must have the same shape, got "
            f"keys {tuple(getattr(keys, 'shape', ()))} and "
            f"values {tuple(getattr(values, 'shape', ()))}"
        )


def _check_training_pairs(x_train: Tensor, y_train: Tensor) -> None:
    _check_1d("x_train", x_train)
    _check_1d("y_train", y_train)
    if x_train.shape != y_train.shape:
        raise ValueError(
            "x_train and y_train must have the same shape, "
            f"got x_train {tuple(x_train.shape)} and y_train {tuple(y_train.shape)}"
        )
    if x_train.shape[0] < 2:
        raise ValueError(
            f"leave-one-out needs at least 2 training pairs, got {x_train.shape[0]}"
        )
