"""The exercise checks of chapter 11 accept the reference and name each diagnosed mistake."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from companion.exercises import gating_vs_attention as ex
from companion.gating import GRUCell

GRU_CHECKS = [ex.check_gru_cell_small, ex.check_gru_cell_thorough]
SGU_CHECKS = [ex.check_spatial_gating_unit_small, ex.check_spatial_gating_unit_thorough]


def gru_ok(X, H, W_ih, W_hh, b_ih, b_hh):
    Xr, Xz, Xn = (X @ W_ih.T + b_ih).chunk(3, dim=-1)
    Hr, Hz, Hn = (H @ W_hh.T + b_hh).chunk(3, dim=-1)
    R, Z = torch.sigmoid(Xr + Hr), torch.sigmoid(Xz + Hz)
    return Z * H + (1 - Z) * torch.tanh(Xn + R * Hn)


def gru_with_companion(X, H, W_ih, W_hh, b_ih, b_hh):
    cell = GRUCell(X.shape[1], H.shape[1]).to(X.dtype)
    with torch.no_grad():
        for name, value in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), (W_ih, W_hh, b_ih, b_hh)):
            getattr(cell, name).copy_(value)
    return cell(X, H).detach()


def sgu_ok(Z, W, b):
    U, V = Z.chunk(2, dim=-1)
    return U * (W @ F.layer_norm(V, V.shape[-1:]) + b[:, None])


def sgu_einsum(Z, W, b):
    k = Z.shape[-1] // 2
    V = Z[..., k:]
    V = (V - V.mean(-1, keepdim=True)) / torch.sqrt(V.var(-1, unbiased=False, keepdim=True) + 1e-5)
    return Z[..., :k] * (torch.einsum("ij,bjk->bik", W, V) + b[None, :, None])


@pytest.mark.parametrize("check", GRU_CHECKS)
@pytest.mark.parametrize("solution", [gru_ok, gru_with_companion])
def test_gru_checks_accept_correct_answers(check, solution):
    check(solution)


@pytest.mark.parametrize("check", SGU_CHECKS)
@pytest.mark.parametrize("solution", [sgu_ok, sgu_einsum])
def test_sgu_checks_accept_correct_answers(check, solution):
    check(solution)


def _parts(X, H, W_ih, W_hh, b_ih, b_hh):
    Xr, Xz, Xn = (X @ W_ih.T + b_ih).chunk(3, dim=-1)
    Hr, Hz, Hn = (H @ W_hh.T + b_hh).chunk(3, dim=-1)
    return Xr, Xz, Xn, Hr, Hz, Hn, W_hh.chunk(3)[2], b_hh.chunk(3)[2]


def gru_paper(*a):
    Xr, Xz, Xn, Hr, Hz, Hn, W_n, b_n = _parts(*a)
    R, Z = torch.sigmoid(Xr + Hr), torch.sigmoid(Xz + Hz)
    return Z * a[1] + (1 - Z) * torch.tanh(Xn + (R * a[1]) @ W_n.T + b_n)


def gru_bias_outside(*a):
    Xr, Xz, Xn, Hr, Hz, Hn, W_n, b_n = _parts(*a)
    R, Z = torch.sigmoid(Xr + Hr), torch.sigmoid(Xz + Hz)
    return Z * a[1] + (1 - Z) * torch.tanh(Xn + R * (a[1] @ W_n.T) + b_n)


def gru_update_flipped(*a):
    Xr, Xz, Xn, Hr, Hz, Hn, _, _ = _parts(*a)
    R, Z = torch.sigmoid(Xr + Hr), torch.sigmoid(Xz + Hz)
    return (1 - Z) * a[1] + Z * torch.tanh(Xn + R * Hn)


def gru_gates_swapped(*a):
    Xz, Xr, Xn, Hz, Hr, Hn, _, _ = _parts(*a)
    R, Z = torch.sigmoid(Xr + Hr), torch.sigmoid(Xz + Hz)
    return Z * a[1] + (1 - Z) * torch.tanh(Xn + R * Hn)


def gru_no_reset(*a):
    Xr, Xz, Xn, Hr, Hz, Hn, _, _ = _parts(*a)
    Z = torch.sigmoid(Xz + Hz)
    return Z * a[1] + (1 - Z) * torch.tanh(Xn + Hn)


def gru_candidate_only(*a):
    Xr, Xz, Xn, Hr, Hz, Hn, _, _ = _parts(*a)
    return torch.tanh(Xn + torch.sigmoid(Xr + Hr) * Hn)


GRU_MISTAKES = {
    "paper form": (gru_paper, r"original paper's GRU"),
    "bias outside": (gru_bias_outside, r"b_hn is outside the reset"),
    "update flipped": (gru_update_flipped, r"update gate is used the other way round"),
    "gates swapped": (gru_gates_swapped, r"reset and update gates are swapped"),
    "no reset": (gru_no_reset, r"no reset gate"),
    "candidate only": (gru_candidate_only, r"returned the candidate"),
}


@pytest.mark.parametrize("check", GRU_CHECKS)
@pytest.mark.parametrize("mistake", list(GRU_MISTAKES))
def test_gru_checks_name_the_mistake(check, mistake):
    fn, hint = GRU_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=hint):
        check(fn)


def _uv(Z):
    return Z.chunk(2, dim=-1)


SGU_MISTAKES = {
    "transposed": (lambda Z, W, b: _uv(Z)[0] * (W.T @ F.layer_norm(_uv(Z)[1], _uv(Z)[1].shape[-1:])
                                                + b[:, None]), r"W is transposed"),
    "swapped halves": (lambda Z, W, b: _uv(Z)[1] * (W @ F.layer_norm(_uv(Z)[0], _uv(Z)[0].shape[-1:])
                                                     + b[:, None]), r"halves are swapped"),
    "no norm": (lambda Z, W, b: _uv(Z)[0] * (W @ _uv(Z)[1] + b[:, None]), r"V is not normalised"),
    "no bias": (lambda Z, W, b: _uv(Z)[0] * (W @ F.layer_norm(_uv(Z)[1], _uv(Z)[1].shape[-1:])),
                r"bias b is missing"),
    "added": (lambda Z, W, b: _uv(Z)[0] + (W @ F.layer_norm(_uv(Z)[1], _uv(Z)[1].shape[-1:]) + b[:, None]),
              r"added U instead of multiplying"),
    "gate only": (lambda Z, W, b: W @ F.layer_norm(_uv(Z)[1], _uv(Z)[1].shape[-1:]) + b[:, None],
                  r"without applying it to U"),
}


@pytest.mark.parametrize("check", SGU_CHECKS)
@pytest.mark.parametrize("mistake", list(SGU_MISTAKES))
def test_sgu_checks_name_the_mistake(check, mistake):
    fn, hint = SGU_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=hint):
        check(fn)


def test_sgu_thorough_catches_mixing_along_the_features():
    def mixes_features(Z, W, b):
        U, V = _uv(Z)
        return U * (F.layer_norm(V, V.shape[-1:]) @ W + b[:, None])
    with pytest.raises(AssertionError, match="mixes the features"):
        ex.check_spatial_gating_unit_thorough(mixes_features)


def test_every_question_has_a_forbidden_entry():
    assert set(ex.FORBIDDEN) == {"gru_cell", "spatial_gating_unit"}
