"""Tests of what every exercise check shares (companion/exercises/__init__.py): copies, torch's errors, autograd."""

from __future__ import annotations

import pytest
import torch

from companion.exercises import (
    TORCH_HINTS,
    backpropagate,
    call_on_copies,
    expect_differentiable,
    expect_returned,
    explain_error,
)


def _error_of(make) -> str:
    try:
        make()
    except RuntimeError as err:
        return str(err)
    raise AssertionError("no error")


def _backward_after_in_place():
    x = torch.randn(3, requires_grad=True)
    y = x * 2
    z = y.sin()  # sin saves its input y for the backward pass
    y.add_(1)
    z.sum().backward()


# One operation per entry of TORCH_HINTS that makes torch raise the error the entry explains.
TORCH_ERRORS = {
    "cannot be multiplied": lambda: torch.randn(2, 3) @ torch.randn(2, 3),
    "must match the size of tensor": lambda: torch.randn(2, 3) + torch.randn(4),
    "view size is not compatible": lambda: torch.randn(2, 3, 4).permute(0, 2, 1).view(-1),
    "is invalid for input of size": lambda: torch.randn(2, 3).reshape(4, 2),
    "is being used in an in-place operation": lambda: torch.randn(3, requires_grad=True).add_(1),
    "modified by an inplace operation": _backward_after_in_place,
    "does not require grad and does not have a grad_fn": lambda: torch.randn(3).sum().backward(),
    "Can't call numpy() on Tensor that requires grad": lambda: torch.randn(3, requires_grad=True).numpy(),
}


def test_every_torch_hint_matches_the_message_torch_raises():
    assert set(TORCH_ERRORS) == set(TORCH_HINTS)
    for fragment, make in TORCH_ERRORS.items():
        assert fragment in _error_of(make), fragment


def test_a_torch_error_in_the_learners_code_gets_its_hint():
    def split_with_view(X):
        return X.permute(0, 2, 1).view(-1)

    with pytest.raises(AssertionError, match=r"`split` raised RuntimeError: view size .*\. After permute.*\.reshape"):
        call_on_copies(split_with_view, torch.randn(2, 3, 4), name="split")


def test_a_checks_own_hint_comes_before_the_shared_one():
    message = "`f` raised RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x3 and 2x3)."
    assert explain_error(message, {"cannot be multiplied": "Use W.T."}).endswith("(2x3 and 2x3). Use W.T.")
    assert explain_error(message).endswith(TORCH_HINTS["cannot be multiplied"])


def test_a_hint_function_that_returns_none_lets_the_next_entry_answer():
    message = "`f` raised RuntimeError: shape '[4, 2]' is invalid for input of size 6"
    hints = {"`f`": lambda m: None, "invalid": lambda m: f"({len(m)} characters)"}
    assert explain_error(message, hints) == f"{message}. ({len(message)} characters)"
    assert explain_error(message, {"`f`": lambda m: None}) == f"{message}. {TORCH_HINTS['is invalid for input of size']}"


def test_a_message_without_a_known_fragment_is_left_as_it_is():
    message = "`f` raised RuntimeError: shape mismatch in my code"
    assert explain_error(message, {"cannot be multiplied": "no"}) == message


def test_the_learner_gets_copies_and_the_result_comes_back():
    x = torch.arange(3.0)
    seen = []

    def keep(t):
        seen.append(t)
        return t * 2

    assert torch.equal(call_on_copies(keep, x, name="keep"), 2 * x)
    assert seen[0] is not x and torch.equal(seen[0], x)


def test_an_input_changed_in_place_is_named_by_the_learners_parameter():
    def normalise(scores, k):
        scores -= scores.amax(dim=-1, keepdim=True)
        return scores

    x = torch.tensor([[1.0, 2.0]])
    with pytest.raises(AssertionError, match=r"^`normalise` changed its input `scores` in place .*`scores \+= \.\.\.`"
                                             r".*compute a new tensor instead\.$"):
        call_on_copies(normalise, x, 2, name="normalise")
    assert torch.equal(x, torch.tensor([[1.0, 2.0]]))  # the check's own tensor is untouched


def test_several_changed_inputs_are_all_named():
    def step(q, k, cache):
        q.mul_(2)
        cache.add_(1)
        return q

    with pytest.raises(AssertionError, match=r"changed its inputs `q`, `cache` in place.*compute new tensors"):
        call_on_copies(step, torch.ones(2), torch.ones(2), torch.ones(2), name="step")


def test_an_input_without_a_name_is_still_caught():
    with pytest.raises(AssertionError, match=r"^`f` changed its inputs in place"):
        call_on_copies(lambda *a: a[0].zero_(), torch.ones(2), name="f")


def test_tensors_inside_a_tuple_are_copied_and_checked():
    def step(tokens, state):
        state[1].zero_()
        return tokens

    state = (torch.ones(2), torch.ones(2))
    with pytest.raises(AssertionError, match=r"changed its input `state` in place"):
        call_on_copies(step, torch.zeros(2), state, name="step")
    assert torch.equal(state[1], torch.ones(2))


def test_an_input_holding_nan_is_not_taken_for_changed():
    x = torch.tensor([1.0, float("nan"), float("inf")])
    call_on_copies(lambda t: t + 1, x, name="f")
    with pytest.raises(AssertionError, match="in place"):
        call_on_copies(lambda t: t.nan_to_num_(0.0), x, name="f")


def test_expect_returned_names_the_stub_and_a_missing_return():
    with pytest.raises(AssertionError, match=r"`f` returned None: .*`return` statement"):
        expect_returned(None, name="f")
    with pytest.raises(AssertionError, match=r"`f` returned `\.\.\.`: replace"):
        expect_returned(..., name="f")
    expect_returned(0, name="f")


def test_a_result_cut_off_from_autograd_is_named():
    x = torch.randn(3, requires_grad=True)
    expect_differentiable(x * 2, name="f", needs="the result must depend on x")
    with pytest.raises(AssertionError, match=r"`f` breaks autograd: the result must depend on x\. Stay in torch"):
        expect_differentiable((x * 2).detach(), name="f", needs="the result must depend on x")


def test_backpropagate_names_an_input_the_gradient_does_not_reach():
    w, v = torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)
    backpropagate(w * v, name="f", reaches={"the weights": w, "the values": v})
    w2, v2 = torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)
    with pytest.raises(AssertionError, match=r"`f` breaks autograd: no gradient reaches the weights"):
        backpropagate(w2.detach() * v2, name="f", reaches={"the weights": w2, "the values": v2})


def test_backpropagate_turns_an_autograd_error_into_a_hint():
    x = torch.randn(3, requires_grad=True)
    y = x * 2
    z = y.sin()
    y.add_(1)
    with pytest.raises(AssertionError, match=r"`f` breaks autograd: .*modified by an inplace operation.*An in-place change"):
        backpropagate(z, name="f")
