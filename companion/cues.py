"""Queries, keys and values as code (chapter 1).

Attention pooling, and lookups that are exact (a database) or soft (a search).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

# Chapter 1 imports its bar chart from here.
from .plotting import plot_weight_bars  # noqa: F401

__all__ = [
    "SCORES",
    "attention_pooling",
    "dot_scores_with_key_bias",
    "exact_match_weights",
    "similarity_scores",
    "soft_lookup",
]

SCORES = ("distance", "dot")  # the similarity measures `similarity_scores` knows


def _as_rows(name: str, t: Tensor) -> Tensor:
    """(n,) scalars -> (n, 1) one-feature vectors; (n, d) vectors stay as they are."""
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() not in (1, 2):
        raise ValueError(
            f"{name} must be (n,) scalars or (n, d) vectors, got shape {tuple(t.shape)}"
        )
    if t.shape[0] == 0:
        raise ValueError(
            f"{name} must hold at least one entry, got shape {tuple(t.shape)}"
        )
    return t.unsqueeze(-1) if t.dim() == 1 else t


def _check_same_width(q: Tensor, k: Tensor, queries: Tensor, keys: Tensor) -> None:
    """q, k are (n, d) views of the caller's queries and keys, named in the message."""
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            "queries and keys must have the same number of features d, "
            f"got queries {tuple(queries.shape)} and keys {tuple(keys.shape)}"
        )


def attention_pooling(weights: Tensor, values: Tensor) -> Tensor:
    """Attention pooling f(q_j) = sum_i alpha_ji v_i, chapter 1, eq. (cues-pooling).

    Shapes: weights (n_q, n_k), values (n_k,) or (n_k, d) -> (n_q,) or (n_q, d).
    """
    _check_pooling_inputs(weights, values)
    # Row j of the result mixes the value rows with the weights of query j; rows need
    # not sum to one (an exact-match miss is a row of zeros).
    return weights @ values  # (n_q, n_k) @ (n_k, d) -> (n_q, d)


def exact_match_weights(queries: Tensor, keys: Tensor) -> Tensor:
    """Database lookup alpha(q, k_i) = 1[q = k_i], chapter 1, eq. (cues-exact).

    Shapes: queries (n_q,) or (n_q, d), keys (n_k,) or (n_k, d) -> (n_q, n_k).
    """
    q, k = _as_rows("queries", queries), _as_rows("keys", keys)  # (n_q, d), (n_k, d)
    _check_same_width(q, k, queries, keys)
    n_distinct = torch.unique(k, dim=0).shape[0]
    if n_distinct < k.shape[0]:
        # With a repeated key a lookup would be ambiguous, as in a table with a
        # repeated primary key.
        raise ValueError(
            f"keys must be unique, got {k.shape[0]} keys "
            f"of which only {n_distinct} are distinct"
        )
    # (n_q, 1, d) == (1, n_k, d) -> (n_q, n_k)
    match = (q.unsqueeze(1) == k.unsqueeze(0)).all(dim=-1)
    # Integer keys (ids) give float weights, so they can multiply float values.
    dtype = k.dtype if k.dtype.is_floating_point else torch.get_default_dtype()
    return match.to(dtype)  # a query that matches no key gets a row of zeros


def similarity_scores(queries: Tensor, keys: Tensor, kind: str = "distance") -> Tensor:
    """Scores s(q, k_i) of each query with each key, chapter 1, eq. (cues-scores).

    Shapes: queries (n_q,) or (n_q, d), keys (n_k,) or (n_k, d) -> (n_q, n_k).
    Args: kind "distance" gives -||q - k_i||^2, "dot" gives q . k_i.
    """
    if kind not in SCORES:
        raise ValueError(f"kind must be one of {SCORES}, got {kind!r}")
    q, k = _as_rows("queries", queries), _as_rows("keys", keys)  # (n_q, d), (n_k, d)
    _check_same_width(q, k, queries, keys)
    if kind == "dot":
        return q @ k.T  # (n_q, d) @ (d, n_k) -> (n_q, n_k)
    diff = q.unsqueeze(1) - k.unsqueeze(0)  # (n_q, 1, d) - (1, n_k, d) -> (n_q, n_k, d)
    return -(diff**2).sum(dim=-1)  # (n_q, n_k): closer keys score higher


def dot_scores_with_key_bias(queries: Tensor, keys: Tensor) -> Tensor:
    """Scores q . k_i - ||k_i||^2 / 2, chapter 1, eq. (cues-distance-expanded).

    Shapes: queries (n_q,) or (n_q, d), keys (n_k,) or (n_k, d) -> (n_q, n_k).
    They are -||q - k_i||^2 / 2 without its -||q||^2 / 2, the same for every key,
    so the softmax over the keys gives the same weights to both.
    """
    q, k = _as_rows("queries", queries), _as_rows("keys", keys)  # (n_q, d), (n_k, d)
    _check_same_width(q, k, queries, keys)
    key_bias = -(k**2).sum(dim=-1) / 2  # (n_k,): one bias per key, none per query
    return q @ k.T + key_bias  # (n_q, n_k) + (n_k,) -> (n_q, n_k)


def soft_lookup(
    queries: Tensor,
    keys: Tensor,
    values: Tensor,
    temperature: float = 1.0,
    kind: str = "distance",
) -> tuple[Tensor, Tensor]:
    """Soft lookup, softmax(s / temperature) then pooling, chapter 1, eq. (cues-soft).

    Shapes: queries (n_q,) or (n_q, d), keys (n_k,) or (n_k, d),
    values (n_k,) or (n_k, d_v) -> (n_q,) or (n_q, d_v), weights (n_q, n_k).
    """
    _check_temperature(temperature)
    scores = similarity_scores(queries, keys, kind=kind)  # (n_q, n_k)
    # softmax over the keys (dim=-1): each query spreads one unit of attention.
    weights = torch.softmax(scores / temperature, dim=-1)  # (n_q, n_k)
    return attention_pooling(weights, values), weights


def _check_pooling_inputs(weights: object, values: object) -> None:
    if not isinstance(weights, Tensor) or weights.dim() != 2:
        raise ValueError(
            "weights must be a 2-D tensor (n_q, n_k), "
            f"got {tuple(getattr(weights, 'shape', ()))} ({type(weights).__name__})"
        )
    if not isinstance(values, Tensor) or values.dim() not in (1, 2):
        raise ValueError(
            "values must be a tensor (n_k,) or (n_k, d), "
            f"got {tuple(getattr(values, 'shape', ()))} ({type(values).__name__})"
        )
    if weights.shape[1] != values.shape[0]:
        raise ValueError(
            "weights need one column per value (n_k), got weights "
            f"{tuple(weights.shape)} for values {tuple(values.shape)}"
        )


def _check_temperature(temperature: object) -> None:
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not (temperature > 0 and math.isfinite(temperature))
    ):
        raise ValueError(
            f"temperature must be a finite number > 0, got {temperature!r}"
        )
