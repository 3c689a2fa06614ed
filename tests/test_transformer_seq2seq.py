"""Tests for companion.transformer_seq2seq: causal masks, the decoder, the KV cache, decoding, the tasks (chapter 9)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from companion.dates import make_date_data
from companion.multihead import MultiHeadAttention, load_torch_mha_weights
from companion.positional import LearnedPositionalEmbedding, PositionalEncoding
from companion.seq2seq import evaluate_seq2seq, greedy_decode, train_seq2seq
from companion.transformer_seq2seq import (
    KVCache,
    TransformerDecoder,
    TransformerDecoderBlock,
    TransformerEncoderDecoder,
    attention_with_cache,
    causal_mask,
    make_sequence_task,
    time_decoding,
    training_flops_per_token,
    transformer_greedy_decode,
)

V_SRC, V_TGT, D = 13, 9, 16


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models: a second thread only adds synchronisation, and the suite shares a 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def batch():
    g = gen(0)
    X = torch.randint(4, V_SRC, (3, 7), generator=g)  # (B, T_src)
    lens = torch.tensor([7, 2, 5])  # (B,)
    X[torch.arange(7)[None, :] >= lens[:, None]] = 0  # <pad> after each source
    Y = torch.randint(3, V_TGT, (3, 6), generator=g)  # (B, T_tgt)
    return X, lens, Y


def make_net(norm_first: bool = True, seed: int = 0, num_blks: int = 2,
             positions: str = "sinusoidal") -> TransformerEncoderDecoder:
    torch.manual_seed(seed)
    return TransformerEncoderDecoder(V_SRC, V_TGT, num_hiddens=D, ffn_num_hiddens=24, num_heads=2,
                                     num_blks=num_blks, norm_first=norm_first, max_len=32,
                                     positions=positions).eval()


BOTH_NORMS_AND_POSITIONS = pytest.mark.parametrize(
    "norm_first, positions", [(False, "sinusoidal"), (True, "sinusoidal"), (True, "learned")])


# --- causal mask ---------------------------------------------------------------------------------------


def test_causal_mask_is_the_lower_triangle():
    expected = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(4), expected)
    assert causal_mask(1).tolist() == [[True]]


def test_causal_mask_with_cached_positions_shifts_right():
    # Two new queries after three cached positions: they sit at positions 3 and 4.
    expected = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(2, 5), expected)
    assert torch.equal(causal_mask(5, 5), causal_mask(5))
    assert torch.equal(causal_mask(3, 8), causal_mask(8)[-3:])


@pytest.mark.parametrize("args, message", [
    ((0,), r"n must be a positive int, got 0"),
    ((3, 2), r"n_k >= n, got n=3, n_k=2"),
    ((2.0,), r"n must be a positive int, got 2.0"),
])
def test_causal_mask_rejects_bad_sizes(args, message):
    with pytest.raises(ValueError, match=message):
        causal_mask(*args)


# --- the decoder ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_first", [False, True])
def test_shapes_of_logits_and_attention_weights(batch, norm_first):
    X, lens, Y = batch
    net = make_net(norm_first)
    logits = net(X, Y, lens)
    assert logits.shape == (3, 6, V_TGT)
    for w in net.decoder.self_attention_weights:
        assert w.shape == (3, 2, 6, 6)
    for w in net.decoder.cross_attention_weights:
        assert w.shape == (3, 2, 6, 7)
    assert net.decoder.attention_weights.shape == (3, 6, 7)


@BOTH_NORMS_AND_POSITIONS
def test_output_at_position_t_ignores_later_target_tokens(batch, norm_first, positions):
    X, lens, Y = batch
    net = make_net(norm_first, positions=positions)
    logits = net(X, Y, lens)  # (3, 6, V)
    for t in range(Y.shape[1] - 1):
        Y2 = Y.clone()
        Y2[:, t + 1:] = torch.randint(3, V_TGT, Y2[:, t + 1:].shape, generator=gen(t))  # new future
        Y2[:, t + 1] = (Y[:, t + 1] + 1 - 3) % (V_TGT - 3) + 3  # certainly different at t + 1
        logits2 = net(X, Y2, lens)
        torch.testing.assert_close(logits2[:, : t + 1], logits[:, : t + 1], atol=1e-6, rtol=1e-5)
        # ... and the future does change the later positions (the test is not vacuous).
        assert (logits2[:, t + 1] - logits[:, t + 1]).abs().max() > 1e-4


@BOTH_NORMS_AND_POSITIONS
def test_output_at_position_t_changes_when_an_earlier_target_token_changes(batch, norm_first, positions):
    X, lens, Y = batch
    net = make_net(norm_first, positions=positions)
    logits = net(X, Y, lens)  # (3, 6, V)
    for s in range(Y.shape[1] - 1):
        Y2 = Y.clone()
        Y2[:, s] = (Y[:, s] + 1 - 3) % (V_TGT - 3) + 3  # a different token at position s only
        moved = (net(X, Y2, lens) - logits).abs().amax(dim=-1)  # (3, 6): largest change per position
        assert torch.equal(moved[:, :s], torch.zeros(3, s))  # before s: nothing
        assert (moved[:, s:] > 1e-4).all(), (s, moved)  # at s and every position after it: a change


def test_self_attention_weights_are_zero_above_the_diagonal(batch):
    X, lens, Y = batch
    net = make_net()
    net(X, Y, lens)
    for w in net.decoder.self_attention_weights:  # (3, 2, 6, 6)
        above = ~causal_mask(6)
        assert torch.equal(w[..., above], torch.zeros_like(w[..., above]))
        torch.testing.assert_close(w.sum(dim=-1), torch.ones(3, 2, 6))
        assert (w[..., causal_mask(6)] > 0).all()


def test_encoder_decoder_attention_ignores_source_padding(batch):
    X, lens, Y = batch
    net = make_net()
    logits = net(X, Y, lens)
    X2 = X.clone()
    X2[torch.arange(7)[None, :] >= lens[:, None]] = 5  # other tokens in the padding
    torch.testing.assert_close(net(X2, Y, lens), logits)
    for w in net.decoder.cross_attention_weights:  # (3, 2, 6, 7)
        padding = (torch.arange(7)[None, :] >= lens[:, None])[:, None, None, :].expand_as(w)
        assert torch.equal(w[padding], torch.zeros_like(w[padding]))
        torch.testing.assert_close(w.sum(dim=-1), torch.ones(3, 2, 6))


def test_queries_come_from_the_decoder_keys_and_values_from_the_encoder(batch):
    X, lens, Y = batch
    net = make_net(num_blks=1)
    block = net.decoder.blks[0]
    seen = {}
    block.attention2.register_forward_hook(lambda m, args, out: seen.update(args=args))
    enc_outputs = net.encoder(X, lens)
    net.decoder(Y, net.decoder.init_state(enc_outputs, lens, use_cache=False))
    queries, keys, values, valid = seen["args"]
    assert queries.shape == (3, 6, D)  # one query per target position
    assert keys is enc_outputs and values is enc_outputs
    assert torch.equal(valid, lens)


def test_decoder_block_equals_torch_transformer_decoder_layer():
    torch.manual_seed(0)
    for norm_first in (False, True):
        layer = nn.TransformerDecoderLayer(D, 2, 24, dropout=0.0, batch_first=True, norm_first=norm_first).eval()
        block = TransformerDecoderBlock(D, 24, 2, 0.0, use_bias=True, norm_first=norm_first).eval()
        with torch.no_grad():
            load_torch_mha_weights(block.attention1, layer.self_attn)
            load_torch_mha_weights(block.attention2, layer.multihead_attn)
            for ours, theirs in ((block.ffn.dense1, layer.linear1), (block.ffn.dense2, layer.linear2),
                                 (block.addnorm1.ln, layer.norm1), (block.addnorm2.ln, layer.norm2),
                                 (block.addnorm3.ln, layer.norm3)):
                ours.weight.copy_(theirs.weight)
                ours.bias.copy_(theirs.bias)
        X, memory = torch.randn(3, 5, D, generator=gen(1)), torch.randn(3, 7, D, generator=gen(2))
        lens = torch.tensor([7, 3, 5])
        padding = torch.arange(7)[None, :] >= lens[:, None]  # torch: True = ignore
        expected = layer(X, memory, tgt_mask=nn.Transformer.generate_square_subsequent_mask(5),
                         memory_key_padding_mask=padding, tgt_is_causal=True)
        torch.testing.assert_close(block(X, memory, lens), expected, atol=1e-5, rtol=1e-5)


def test_decoder_rejects_bad_inputs(batch):
    X, lens, Y = batch
    net = make_net()
    enc = net.encoder(X, lens)
    with pytest.raises(ValueError, match=r"X must be a 2-D tensor of token ids"):
        net.decoder(Y.float(), net.decoder.init_state(enc, lens))
    with pytest.raises(ValueError, match=r"same batch size, got X \(2, 6\)"):
        net.decoder(Y[:2], net.decoder.init_state(enc, lens))
    with pytest.raises(ValueError, match=r"enc_outputs must be \(batch, T_src, 16\), got torch.Size\(\[3, 7, 8\]\)"):
        net.decoder.init_state(enc[..., :8], lens)
    with pytest.raises(ValueError, match=r"num_blks must be a positive int, got 0"):
        TransformerDecoder(V_TGT, D, 24, 2, 0, 0.0)


# --- the KV cache ---------------------------------------------------------------------------------------


def test_attention_with_cache_equals_attention_over_all_positions():
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, 4, 0.0, bias=True, query_size=D, key_size=D, value_size=D).eval()
    X = torch.randn(2, 6, D, generator=gen(3))
    full = mha(X, X, X, causal_mask(6)[None])  # (2, 6, D)
    cache = KVCache()
    first = attention_with_cache(mha, X[:, :4], X[:, :4], cache, causal_mask(4)[None])  # four at once
    rest = [attention_with_cache(mha, X[:, t:t + 1], X[:, t:t + 1], cache, causal_mask(1, t + 1)[None])
            for t in (4, 5)]  # then one by one
    assert len(cache) == 6 and cache.k.shape == (2 * 4, 6, D // 4)
    torch.testing.assert_close(torch.cat([first, *rest], dim=1), full, atol=1e-6, rtol=1e-5)
    assert mha.attention_weights.shape == (2, 4, 1, 6)


def test_kv_cache_rejects_mismatched_keys_and_an_empty_cache():
    cache = KVCache()
    with pytest.raises(ValueError, match=r"k and v must be 3-D of the same shape"):
        cache.append(torch.zeros(2, 1, 4), torch.zeros(2, 1, 3))
    cache.append(torch.zeros(2, 1, 4), torch.zeros(2, 1, 4))
    with pytest.raises(ValueError, match=r"new keys must have shape \(2, n_new, 4\)"):
        cache.append(torch.zeros(3, 1, 4), torch.zeros(3, 1, 4))
    mha = MultiHeadAttention(D, 2, 0.0, query_size=D, key_size=D, value_size=D)
    with pytest.raises(ValueError, match=r"the cache is empty"):
        attention_with_cache(mha, torch.zeros(1, 1, D), None, KVCache())


@BOTH_NORMS_AND_POSITIONS
def test_decoding_one_token_at_a_time_with_the_cache_equals_one_pass(batch, norm_first, positions):
    X, lens, Y = batch
    net = make_net(norm_first, positions=positions)
    expected = net(X, Y, lens)  # (3, 6, V): teacher forcing, one pass
    state = net.decoder.init_state(net.encoder(X, lens), lens)  # caches on
    steps, weights = [], []
    for t in range(Y.shape[1]):
        logits, state = net.decoder(Y[:, t:t + 1], state)  # (3, 1, V)
        steps.append(logits)
        weights.append(net.decoder.attention_weights)
        assert state.offset == t + 1 and len(state.caches[0][0]) == t + 1 and len(state.caches[0][1]) == 7
    torch.testing.assert_close(torch.cat(steps, dim=1), expected, atol=1e-5, rtol=1e-5)
    net(X, Y, lens)
    torch.testing.assert_close(torch.cat(weights, dim=1), net.decoder.attention_weights, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_greedy_decoding_with_and_without_cache_gives_the_same_tokens(batch, positions):
    X, lens, _ = batch
    for seed in range(3):
        net = make_net(seed=seed, positions=positions)
        with_cache = transformer_greedy_decode(net, X, lens, 1, 2, 9, use_cache=True, stop_at_eos=False)
        without = transformer_greedy_decode(net, X, lens, 1, 2, 9, use_cache=False, stop_at_eos=False)
        assert with_cache.shape == (3, 9)
        assert torch.equal(with_cache, without)


def test_greedy_decoding_feeds_back_its_own_prediction(batch):
    X, lens, _ = batch
    net = make_net(seed=1)
    tokens = transformer_greedy_decode(net, X, lens, 1, 2, 5, stop_at_eos=False)  # (3, 5)
    dec_X = torch.cat([torch.ones(3, 1, dtype=torch.long), tokens[:, :-1]], dim=1)  # <bos>, then its outputs
    # Under teacher forcing with its own outputs as the target, the argmax is those outputs again.
    assert torch.equal(net(X, dec_X, lens).argmax(dim=-1), tokens)


def test_greedy_decoding_stops_at_eos_and_pads_after_it(batch):
    X, lens, _ = batch
    net = make_net()
    with torch.no_grad():
        net.decoder.dense.bias.fill_(-100.0)
        net.decoder.dense.bias[2] = 100.0  # <eos> always wins
    tokens = transformer_greedy_decode(net, X, lens, 1, 2, 6, pad=0)
    assert tokens.tolist() == [[2, 0, 0, 0, 0, 0]] * 3


def test_chapter_5_greedy_decode_runs_the_transformer_through_its_cache(batch):
    X, lens, _ = batch
    net = make_net(seed=2)
    tokens, weights = greedy_decode(net, X, lens, 1, 2, 7)
    assert torch.equal(tokens, transformer_greedy_decode(net, X, lens, 1, 2, 7))
    assert weights.shape == (3, 7, 7)
    torch.testing.assert_close(weights.sum(dim=-1)[tokens != 0], torch.ones(int((tokens != 0).sum())))


def test_time_decoding_measures_both_modes_for_each_length(batch):
    X, lens, _ = batch
    net = make_net()
    seconds = time_decoding(net, X, lens, [2, 6], repeats=2)
    assert set(seconds) == {False, True}
    for times in seconds.values():
        assert len(times) == 2 and all(0 < t < 10 for t in times)
    with pytest.raises(ValueError, match=r"repeats must be a positive int, got 0"):
        time_decoding(net, X, lens, [4], repeats=0)
    with pytest.raises(ValueError, match=r"steps must hold at least one number of steps"):
        time_decoding(net, X, lens, [])
    with pytest.raises(ValueError, match=r"each number of steps must be a positive int, got 0"):
        time_decoding(net, X, lens, [3, 0])


# --- positions ------------------------------------------------------------------------------------------


def test_learned_positions_replace_the_tables_of_both_stacks():
    sinusoidal, learned = make_net(), make_net(positions="learned")
    for stack in (sinusoidal.encoder, sinusoidal.decoder):
        assert type(stack.pos_encoding) is PositionalEncoding
    for stack in (learned.encoder, learned.decoder):
        assert isinstance(stack.pos_encoding, LearnedPositionalEmbedding)
        P = stack.pos_encoding.P  # (1, 32, D): trained with the rest
        assert P.shape == (1, 32, D) and P.requires_grad
        assert 0.8 < P.std().item() < 1.2  # the scale of the token vectors (N(0, 1/d) times sqrt(d))
    extra = sum(p.numel() for p in learned.parameters()) - sum(p.numel() for p in sinusoidal.parameters())
    assert extra == 2 * 32 * D


def test_learned_positions_are_trained_and_limited_to_max_len(batch):
    X, lens, Y = batch
    net = make_net(positions="learned").train()
    net(X, Y, lens).sum().backward()
    grad = net.encoder.pos_encoding.P.grad[0]  # (32, D)
    assert grad[:7].abs().sum(dim=-1).min() > 0 and torch.equal(grad[7:], torch.zeros(25, D))  # T_src = 7
    with pytest.raises(ValueError, match=r"do not fit in the table of max_len=32"):
        net(torch.ones(1, 33, dtype=torch.long), Y[:1], torch.tensor([33]))


def test_unknown_positions_are_rejected():
    with pytest.raises(ValueError, match=r"positions must be one of \('sinusoidal', 'learned'\), got 'rotary'"):
        TransformerEncoderDecoder(V_SRC, V_TGT, num_hiddens=D, positions="rotary")


# --- counting the arithmetic ------------------------------------------------------------------------------


class _OneLinearDecoder(nn.Module):
    """A stand-in model whose only matrix product is one linear layer on the target embeddings."""

    def __init__(self, vocab_size: int, d: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d)
        self.dense = nn.Linear(d, vocab_size, bias=False)

    def forward(self, enc_X, dec_X, enc_valid_lens):
        return self.dense(self.embedding(dec_X))  # (b, T, V)


def test_training_flops_per_token_matches_a_hand_count():
    data = make_date_data(40, 0, 1, seed=0)
    V, d = len(data.tgt_vocab), 8
    net = _OneLinearDecoder(V, d)
    n = 24
    # Forward: (n * T_tgt, d) @ (d, V), 2 n T d V FLOPs; backward: the same again for the weight's gradient and
    # for the input's (the embedding needs it). Per token: source and target tokens of the n examples.
    tokens = int(data.train.X_valid_len[:n].sum() + data.train.Y_valid_len[:n].sum())
    expected = 3 * 2 * n * data.train.Y.shape[1] * d * V / tokens
    assert training_flops_per_token(net, data.train, data.tgt_vocab, num_examples=n, batch_size=10) == \
        pytest.approx(expected)


def test_training_flops_per_token_leaves_the_gradients_alone():
    data = make_date_data(40, 0, 1, seed=0)
    net = TransformerEncoderDecoder(len(data.src_vocab), len(data.tgt_vocab), num_hiddens=D, ffn_num_hiddens=24,
                                    num_heads=2, num_blks=1)
    first = next(net.parameters())
    first.grad = torch.full_like(first, 3.0)
    flops = training_flops_per_token(net, data.train, data.tgt_vocab, num_examples=16)
    assert flops > 0
    assert torch.equal(first.grad, torch.full_like(first, 3.0))
    assert all(p.grad is None for p in list(net.parameters())[1:])
    wider = TransformerEncoderDecoder(len(data.src_vocab), len(data.tgt_vocab), num_hiddens=D, ffn_num_hiddens=48,
                                      num_heads=2, num_blks=1)
    assert training_flops_per_token(wider, data.train, data.tgt_vocab, num_examples=16) > flops
    with pytest.raises(ValueError, match=r"num_examples must be a positive int, got 0"):
        training_flops_per_token(net, data.train, data.tgt_vocab, num_examples=0)


# --- the sequence tasks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["reverse", "sort"])
def test_sequence_task_targets_and_layout(task):
    src_vocab, tgt_vocab, train, valid, test = make_sequence_task(50, 10, 20, task=task, min_len=3, max_len=6,
                                                                  seed=1)
    assert (len(train), len(valid), len(test)) == (50, 10, 20)
    for split in (train, valid, test):
        for s, t in zip(split.sources, split.targets):
            assert 3 <= len(s) <= 6
            assert t == (s[::-1] if task == "reverse" else "".join(sorted(s)))
        assert split.X.shape == split.Y.shape == (len(split), 7)
        assert torch.equal(split.X_valid_len, torch.tensor([len(s) + 1 for s in split.sources]))
        for row, s in zip(split.Y, split.targets):
            assert tgt_vocab.decode(row) == s and int(row[len(s)]) == tgt_vocab.eos
    assert not set(train.sources) & set(test.sources) and not set(train.sources) & set(valid.sources)
    assert len(src_vocab) == 4 + 26


def test_sequence_task_is_reproducible_and_rejects_bad_arguments():
    a = make_sequence_task(20, 0, 5, seed=3)[2]
    b = make_sequence_task(20, 0, 5, seed=3)[2]
    assert a.sources == b.sources and torch.equal(a.X, b.X)
    with pytest.raises(ValueError, match=r"task must be 'reverse' or 'sort', got 'copy'"):
        make_sequence_task(task="copy")
    with pytest.raises(ValueError, match=r"min_len must be <= max_len, got min_len=5, max_len=4"):
        make_sequence_task(min_len=5, max_len=4)
    with pytest.raises(ValueError, match=r"could not draw 10 distinct strings"):
        make_sequence_task(8, 1, 1, min_len=1, max_len=1, alphabet="ab")


def test_transformer_learns_to_reverse_short_strings():
    src_vocab, tgt_vocab, train, _, test = make_sequence_task(600, 0, 100, min_len=2, max_len=5, alphabet="abcdef",
                                                              seed=0)
    torch.manual_seed(0)
    net = TransformerEncoderDecoder(len(src_vocab), len(tgt_vocab), num_hiddens=32, ffn_num_hiddens=64,
                                    num_heads=2, num_blks=1)
    losses = train_seq2seq(net, train, tgt_vocab, num_epochs=12, lr=0.005, batch_size=32, progress=False,
                           device="cpu")
    assert losses[-1] < 0.1 * losses[0]
    _, correct = evaluate_seq2seq(net, test, tgt_vocab)
    assert correct.float().mean() > 0.9


# --- GPU -------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_decoding_on_the_gpu_matches_the_cpu(batch):
    X, lens, Y = batch
    net = make_net()
    cpu_logits = net(X, Y, lens)
    cpu_tokens = transformer_greedy_decode(net, X, lens, 1, 2, 6)
    net.to("cuda")
    X, lens, Y = X.cuda(), lens.cuda(), Y.cuda()
    torch.testing.assert_close(net(X, Y, lens).cpu(), cpu_logits, atol=1e-4, rtol=1e-4)
    for use_cache in (True, False):
        assert torch.equal(transformer_greedy_decode(net, X, lens, 1, 2, 6, use_cache=use_cache).cpu(), cpu_tokens)
