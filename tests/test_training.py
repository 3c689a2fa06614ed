"""Tests for companion.training: the full-batch loop of chapter 3, the sequence-to-sequence loop of chapter 5, the
warm-up schedules of chapter 8."""
import pytest
import torch
from torch import nn

from companion import NWKernelRegression, leave_one_out, make_regression_data, train
from companion.training import train_seq2seq
from conftest import tiny_date_net


@pytest.fixture
def line_problem():
    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 32).unsqueeze(-1)  # (32, 1)
    y = 2 * x + 1  # (32, 1)
    return nn.Linear(1, 1), x, y


def test_train_lowers_the_loss_of_a_tiny_model(line_problem):
    model, x, y = line_problem
    losses = train(model, nn.MSELoss(), (x,), y, num_epochs=50, lr=0.1, progress=False)
    assert losses[-1] < 0.1 * losses[0]


def test_train_returns_one_float_per_epoch(line_problem):
    model, x, y = line_problem
    losses = train(model, nn.MSELoss(), (x,), y, num_epochs=7, lr=0.1, progress=False)
    assert len(losses) == 7
    assert all(type(v) is float for v in losses)


def test_train_records_each_loss_before_its_step(line_problem):
    model, x, y = line_problem
    initial = nn.MSELoss()(model(x), y).item()
    losses = train(model, nn.MSELoss(), (x,), y, num_epochs=3, lr=0.1, progress=False)
    assert losses[0] == pytest.approx(initial)


def test_train_with_adam_lowers_the_loss(line_problem):
    model, x, y = line_problem
    losses = train(model, nn.MSELoss(), (x,), y, num_epochs=50, lr=0.05, optimizer="adam", progress=False)
    assert losses[-1] < losses[0]


def test_train_fits_the_bandwidth_of_nw_kernel_regression():
    data = make_regression_data(seed=0)
    keys, values = leave_one_out(data.x_train, data.y_train)  # (50, 49) each
    model = NWKernelRegression(bandwidth=2.0)
    losses = train(model, nn.MSELoss(), (data.x_train, keys, values), data.y_train,
                   num_epochs=20, lr=0.5, progress=False, device="cpu")
    assert losses[-1] < losses[0]
    assert model.bandwidth < 2.0  # the starting bandwidth over-smooths the sine


def test_train_progress_false_prints_nothing(line_problem, capfd):
    model, x, y = line_problem
    train(model, nn.MSELoss(), (x,), y, num_epochs=3, lr=0.1, progress=False)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_train_honours_companion_progress_0(line_problem, capfd, monkeypatch):
    monkeypatch.setenv("COMPANION_PROGRESS", "0")
    model, x, y = line_problem
    train(model, nn.MSELoss(), (x,), y, num_epochs=3, lr=0.1)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_train_shows_progress_bar_with_loss_by_default(line_problem, capfd, monkeypatch):
    monkeypatch.delenv("COMPANION_PROGRESS", raising=False)
    model, x, y = line_problem
    train(model, nn.MSELoss(), (x,), y, num_epochs=3, lr=0.1)
    _, err = capfd.readouterr()
    assert "3/3" in err and "loss=" in err


def test_train_moves_model_to_requested_device(line_problem):
    model, x, y = line_problem
    train(model, nn.MSELoss(), (x,), y, num_epochs=1, lr=0.1, progress=False, device="cpu")
    assert next(model.parameters()).device == torch.device("cpu")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_epochs": 0}, "num_epochs must be a positive int, got 0"),
        ({"lr": 0.0}, "lr must be > 0, got 0.0"),
        ({"lr": -0.1}, "lr must be > 0, got -0.1"),
        ({"optimizer": "rmsprop"}, r"optimizer must be one of \['adam', 'sgd'\], got 'rmsprop'"),
    ],
)
def test_train_rejects_bad_arguments(line_problem, kwargs, match):
    model, x, y = line_problem
    args = {"num_epochs": 2, "lr": 0.1, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        train(model, nn.MSELoss(), (x,), y, **args)


def test_train_rejects_inputs_that_are_not_a_tuple(line_problem):
    model, x, y = line_problem
    with pytest.raises(ValueError, match="inputs must be a tuple of model arguments, got Tensor"):
        train(model, nn.MSELoss(), x, y, num_epochs=1, lr=0.1, progress=False)


def test_train_rejects_non_scalar_loss(line_problem):
    model, x, y = line_problem
    per_example = nn.MSELoss(reduction="none")
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar, got shape \(32, 1\)"):
        train(model, per_example, (x,), y, num_epochs=1, lr=0.1, progress=False)


@pytest.mark.parametrize("attention", [False, True])
def test_teacher_forced_loss_decreases_on_a_tiny_set(tiny_dates, attention):
    net = tiny_date_net(tiny_dates, attention)
    losses = train_seq2seq(net, tiny_dates.train, tiny_dates.tgt_vocab, num_epochs=12, lr=0.02, batch_size=32,
                           progress=False, device="cpu")
    assert len(losses) == 12 and all(type(v) is float for v in losses)
    assert losses[-1] < 0.6 * losses[0]


def test_training_is_deterministic_for_a_seed(tiny_dates):
    runs = []
    for _ in range(2):
        net = tiny_date_net(tiny_dates, attention=True)
        losses = train_seq2seq(net, tiny_dates.train, tiny_dates.tgt_vocab, num_epochs=2, lr=0.01, batch_size=32, seed=3,
                               progress=False, device="cpu")
        runs.append((losses, [p.detach().clone() for p in net.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    net = tiny_date_net(tiny_dates, attention=True)
    other = train_seq2seq(net, tiny_dates.train, tiny_dates.tgt_vocab, num_epochs=2, lr=0.01, batch_size=32, seed=4,
                          progress=False, device="cpu")
    assert other != runs[0][0]  # another seed, another batch order


@pytest.mark.parametrize(
    "kwargs, message",
    [({"num_epochs": 0}, r"num_epochs must be a positive int, got 0"), ({"lr": 0.0}, r"lr must be > 0, got 0.0"),
     ({"grad_clip": -1.0}, r"grad_clip must be > 0, got -1.0"), ({"num_epochs": 1.5}, r"got 1.5")],
)
def test_train_seq2seq_rejects_bad_arguments(tiny_dates, kwargs, message):
    args = {"num_epochs": 1, "lr": 0.01, **kwargs}
    with pytest.raises(ValueError, match=message):
        train_seq2seq(tiny_date_net(tiny_dates, False), tiny_dates.train, tiny_dates.tgt_vocab, progress=False, device="cpu", **args)


def test_train_seq2seq_leaves_the_thread_count_as_it_was(tiny_dates):
    before = torch.get_num_threads()
    train_seq2seq(tiny_date_net(tiny_dates, False), tiny_dates.train, tiny_dates.tgt_vocab, num_epochs=1, lr=0.01, progress=False,
                  device="cpu")
    assert torch.get_num_threads() == before


def test_train_seq2seq_progress_bar_follows_companion_progress(tiny_dates, capfd, monkeypatch):
    monkeypatch.setenv("COMPANION_PROGRESS", "0")
    train_seq2seq(tiny_date_net(tiny_dates, False), tiny_dates.train, tiny_dates.tgt_vocab, num_epochs=1, lr=0.01, device="cpu")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    monkeypatch.setenv("COMPANION_PROGRESS", "1")
    train_seq2seq(tiny_date_net(tiny_dates, False), tiny_dates.train, tiny_dates.tgt_vocab, num_epochs=1, lr=0.01, device="cpu")
    out, err = capfd.readouterr()
    assert "train" in out + err and "loss" in out + err


# --- learning-rate warm-up schedules (chapter 8) ----------------------------------------------------

from companion.training import linear_warmup_lr, transformer_lr


def test_transformer_lr_is_the_schedule_of_the_paper():
    d, w = 512, 4000
    # Linear up to the warm-up's end, where it peaks at (d w)^-0.5, then 1 / sqrt(step).
    assert transformer_lr(1, d, w) == pytest.approx(d**-0.5 * w**-1.5)
    assert transformer_lr(2000, d, w) == pytest.approx(transformer_lr(1000, d, w) * 2)
    assert transformer_lr(w, d, w) == pytest.approx((d * w) ** -0.5)
    assert transformer_lr(4 * w, d, w) == pytest.approx(transformer_lr(w, d, w) / 2)
    steps = range(1, 3 * w)
    assert max(steps, key=lambda s: transformer_lr(s, d, w)) == w
    assert transformer_lr(w, 128, w) == pytest.approx(2 * transformer_lr(w, d, w))  # d^-0.5


def test_linear_warmup_lr_ramps_to_lr_then_stays():
    assert [linear_warmup_lr(s, 0.3, 3) for s in (1, 2, 3, 4, 100)] == pytest.approx([0.1, 0.2, 0.3, 0.3, 0.3])
    assert linear_warmup_lr(1, 0.3, 0) == 0.3  # no warm-up


@pytest.mark.parametrize("call, message", [
    (lambda: transformer_lr(0, 512, 4000), r"step must be a positive int"),
    (lambda: transformer_lr(1, 0, 4000), r"d_model must be a positive int"),
    (lambda: transformer_lr(1, 512, 0), r"warmup_steps must be a positive int"),
    (lambda: linear_warmup_lr(0, 0.1, 3), r"step must be a positive int"),
    (lambda: linear_warmup_lr(1, -0.1, 3), r"lr must be > 0"),
    (lambda: linear_warmup_lr(1, 0.1, -1), r"warmup_steps must be a non-negative int"),
])
def test_schedules_reject_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
