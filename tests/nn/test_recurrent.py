"""Recurrent patterns: against torch.nn.RNN, teacher forcing, BPTT gradients, exploding gradients and clipping."""
import copy

import pytest
import torch
from torch import nn

from trainlab.init import orthogonal_
from trainlab.nn import (Bidirectional, ElmanRNN, OutputRecurrentRNN, SequenceToFixed, clip_grad_norm_,
                         hidden_gradient_norms)


def _copy_into_torch(ours: ElmanRNN, ref: nn.RNN, suffix: str = "") -> None:
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if name.startswith(("weight", "bias")):
                getattr(ref, name + suffix).copy_(p)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_elman_rnn_matches_torch_rnn(nonlinearity, batch_first):
    torch.manual_seed(0)
    ours = ElmanRNN(3, 5, nonlinearity=nonlinearity, batch_first=batch_first).double()
    ref = nn.RNN(3, 5, nonlinearity=nonlinearity, batch_first=batch_first).double()
    _copy_into_torch(ours, ref)
    x = torch.randn((4, 7, 3) if batch_first else (7, 4, 3), dtype=torch.float64)
    h0 = torch.randn(1, 4, 5, dtype=torch.float64)
    for args in ((x,), (x, h0)):
        out1, h1 = ours(*args)
        out2, h2 = ref(*args)
        torch.testing.assert_close(out1, out2)
        torch.testing.assert_close(h1, h2)
    # BPTT through our unrolled loop gives autograd's gradients of torch's RNN
    (out1.square().sum() + h1.sum()).backward()
    (out2.square().sum() + h2.sum()).backward()
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, getattr(ref, name).grad)


def test_unbatched_input_and_validation():
    ours = ElmanRNN(2, 3)
    ref = nn.RNN(2, 3)
    _copy_into_torch(ours, ref)
    x = torch.randn(6, 2)
    out1, h1 = ours(x)
    out2, h2 = ref(x)
    torch.testing.assert_close(out1, out2)
    torch.testing.assert_close(h1, h2)
    with pytest.raises(ValueError, match="nonlinearity"):
        ElmanRNN(2, 3, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="width"):
        ours(torch.randn(6, 1, 4))


def test_recurrence_by_hand():
    rnn = ElmanRNN(1, 1, nonlinearity="identity", bias=False)
    with torch.no_grad():
        rnn.weight_ih_l0.fill_(2.0)
        rnn.weight_hh_l0.fill_(0.5)
    out, _ = rnn(torch.tensor([[1.0], [0.0], [4.0]]))
    # h1 = 2, h2 = 0.5·2 = 1, h3 = 8 + 0.5 = 8.5
    torch.testing.assert_close(out.squeeze(), torch.tensor([2.0, 1.0, 8.5]))


def test_bidirectional_matches_torch():
    torch.manual_seed(1)
    fwd, bwd = ElmanRNN(3, 4).double(), ElmanRNN(3, 4).double()
    ours = Bidirectional(fwd, bwd)
    ref = nn.RNN(3, 4, bidirectional=True).double()
    _copy_into_torch(fwd, ref)
    _copy_into_torch(bwd, ref, "_reverse")
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    out1, h1 = ours(x)
    out2, h2 = ref(x)
    torch.testing.assert_close(out1, out2)
    torch.testing.assert_close(h1, h2)
    # the backward direction really sees the future: its first output depends on the last input
    x2 = x.clone()
    x2[-1] += 1.0
    assert not torch.allclose(ours(x2)[0][0, :, 4:], out1[0, :, 4:])
    assert torch.allclose(ours(x2)[0][0, :, :4], out1[0, :, :4])
    default = Bidirectional(ElmanRNN(3, 4))
    assert not torch.equal(default.forward_rnn.weight_hh_l0, default.backward_rnn.weight_hh_l0)


def test_output_recurrence_and_teacher_forcing():
    torch.manual_seed(2)
    m = OutputRecurrentRNN(3, 6, 2)
    x = torch.randn(8, 4, 3)
    free = m(x)
    assert free.shape == (8, 4, 2)
    # fed its own outputs as "targets", teacher forcing reproduces the free-running outputs
    torch.testing.assert_close(m(x, targets=free.detach()), free)
    # the recurrence by hand for the first two steps
    with torch.no_grad():
        h1 = torch.tanh(m.input(x[0]))
        o1 = m.output(h1)
        h2 = torch.tanh(m.input(x[1]) + m.feedback(o1))
        torch.testing.assert_close(free[1], m.output(h2))
    with pytest.raises(ValueError, match="targets"):
        m(x, targets=torch.zeros(8, 4, 3))


def test_sequence_to_fixed_pooling_and_training():
    torch.manual_seed(3)
    m = SequenceToFixed(1, 8, 2, pooling="last")
    x = torch.randn(10, 16, 1)
    assert m(x).shape == (16, 2)
    out, _ = m.rnn(x)
    torch.testing.assert_close(m(x), m.head(out[-1]))
    for pooling, ref in (("mean", out.mean(0)), ("max", out.amax(0))):
        m.pooling = pooling
        torch.testing.assert_close(m(x), m.head(ref))
    # learn the sign of the *first* element of a sequence: the state must carry it to the end
    m = SequenceToFixed(1, 16, 2)
    opt = torch.optim.Adam(m.parameters(), lr=0.02)
    gen = torch.Generator().manual_seed(4)
    for _ in range(80):
        x = torch.randn(6, 64, 1, generator=gen)
        y = (x[0, :, 0] > 0).long()
        loss = nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.randn(6, 500, 1, generator=gen)
    acc = (m(x).argmax(1) == (x[0, :, 0] > 0).long()).float().mean()
    assert acc > 0.9


@pytest.mark.parametrize("radius,grows", [(1.5, True), (0.5, False)])
def test_gradients_through_time_explode_or_vanish_with_the_recurrent_spectrum(radius, grows):
    """Linear RNN, W_hh = ρ·Q (Q orthogonal): ‖∂L/∂h_t‖ = ρ^(T−t)·‖∂L/∂h_T‖ exactly (notes 001)."""
    rnn = ElmanRNN(2, 8, nonlinearity="identity").double()
    with torch.no_grad():
        orthogonal_(rnn.weight_hh_l0, gain=radius, generator=torch.Generator().manual_seed(5))
    x = torch.randn(30, 4, 2, dtype=torch.float64)
    norms = hidden_gradient_norms(rnn, x)
    ratios = norms[:-1] / norms[1:]
    torch.testing.assert_close(ratios, torch.full_like(ratios, radius))
    assert (norms[0] > 1e4 * norms[-1]) == grows


def test_clipping_tames_an_exploding_gradient_on_a_long_sequence():
    """100 steps through W_hh = 1.15·Q: the first gradient has norm ~1e12. Plain SGD jumps to NaN in
    one step; with the norm clipped to 1 (Pascanu et al. 2013) the same run stays finite and learns."""
    torch.manual_seed(6)
    base = ElmanRNN(1, 16, nonlinearity="identity")
    with torch.no_grad():
        orthogonal_(base.weight_hh_l0, gain=1.15)
    head = nn.Linear(16, 1)
    x = torch.rand(100, 8, 1)
    y = x.mean(0)

    def run(clip):
        rnn, out = copy.deepcopy(base), copy.deepcopy(head)
        params = list(rnn.parameters()) + list(out.parameters())
        opt = torch.optim.SGD(params, lr=0.01)
        losses, norms = [], []
        for _ in range(10):
            loss = nn.functional.mse_loss(out(rnn(x)[1][0]), y)
            opt.zero_grad()
            loss.backward()
            norms.append(float(clip_grad_norm_(params, 1.0)) if clip else
                         float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))))
            losses.append(loss.item())
            opt.step()
        return losses, norms

    losses, norms = run(clip=False)
    assert norms[0] > 1e9
    assert not torch.isfinite(torch.tensor(losses[1:])).any()
    losses_c, norms_c = run(clip=True)
    assert norms_c[0] == pytest.approx(norms[0], rel=1e-5)  # the same first gradient, but the step is capped
    assert torch.isfinite(torch.tensor(losses_c)).all() and losses_c[-1] < 0.2 * losses_c[0]


def test_clip_grad_norm_matches_torch():
    torch.manual_seed(7)
    a = [torch.randn(3, 4, requires_grad=True), torch.randn(5, requires_grad=True)]
    b = [t.detach().clone().requires_grad_() for t in a]
    for ps in (a, b):
        (ps[0].sum() * 30 + ps[1].square().sum() * 10).backward()
    n1 = clip_grad_norm_(a, 2.0)
    n2 = nn.utils.clip_grad_norm_(b, 2.0)
    torch.testing.assert_close(n1, n2)
    for p, q in zip(a, b):
        torch.testing.assert_close(p.grad, q.grad)
    total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in a]))
    assert total.item() == pytest.approx(2.0, rel=1e-5)
    with pytest.raises(ValueError):
        clip_grad_norm_(a, 0.0)


# ---------------------------------------------------------------------------------------------
# the stacked cells against torch.nn.RNN / LSTM / GRU with the same weights

from trainlab.nn import GRU, LSTM, RNN, SequenceModel, state_gradient_norms  # noqa: E402


@pytest.mark.parametrize("ours_cls, ref_cls", [(RNN, nn.RNN), (LSTM, nn.LSTM), (GRU, nn.GRU)])
@pytest.mark.parametrize("layers, bidirectional, batch_first", [(1, False, False), (2, False, True),
                                                                (2, True, True), (3, True, False)])
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_stacked_cells_match_torch(ours_cls, ref_cls, layers, bidirectional, batch_first, dtype, tol):
    torch.manual_seed(0)
    ref = ref_cls(3, 5, layers, batch_first=batch_first, bidirectional=bidirectional).to(dtype)
    ours = ours_cls(3, 5, layers, batch_first=batch_first, bidirectional=bidirectional).to(dtype)
    # same parameter names and shapes as PyTorch: the weights copy across by name
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in ref.named_parameters()]
    ours.load_state_dict(ref.state_dict())
    x = torch.randn((4, 7, 3) if batch_first else (7, 4, 3), dtype=dtype)
    D = 2 if bidirectional else 1
    h0 = torch.randn(layers * D, 4, 5, dtype=dtype)
    init = (h0, torch.randn_like(h0)) if ref_cls is nn.LSTM else h0
    for args in ((x,), (x, init)):
        out1, s1 = ours(*args)
        out2, s2 = ref(*args)
        torch.testing.assert_close(out1, out2, atol=tol, rtol=tol)
        for a, b in zip(s1 if isinstance(s1, tuple) else (s1,), s2 if isinstance(s2, tuple) else (s2,)):
            torch.testing.assert_close(a, b, atol=tol, rtol=tol)
    # BPTT through our loop gives torch's gradients
    last = s1[0] if isinstance(s1, tuple) else s1
    ref_last = s2[0] if isinstance(s2, tuple) else s2
    (out1.square().sum() + last.sum()).backward()
    (out2.square().sum() + ref_last.sum()).backward()
    for (name, p), (_, q) in zip(ours.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=10 * tol, rtol=10 * tol, msg=name)


@pytest.mark.parametrize("ours_cls, ref_cls", [(LSTM, nn.LSTM), (GRU, nn.GRU)])
def test_unbatched_sequence_matches_torch(ours_cls, ref_cls):
    torch.manual_seed(1)
    ref = ref_cls(2, 4, 2)
    ours = ours_cls(2, 4, 2)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(6, 2)
    out1, s1 = ours(x)
    out2, s2 = ref(x)
    torch.testing.assert_close(out1, out2, atol=1e-6, rtol=1e-6)
    assert out1.shape == (6, 4)


def test_lstm_cell_by_hand_and_forget_bias():
    # one step written out from the gate equations, H = 1: gates (i, f, g, o) stacked
    torch.manual_seed(0)
    lstm = LSTM(1, 1, forget_bias=1.0).double()
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.tensor([[0.5], [-0.3], [0.8], [0.1]]))
        lstm.weight_hh_l0.zero_()
        lstm.bias_hh_l0.zero_()
        lstm.bias_ih_l0.copy_(torch.tensor([0.0, 1.0, 0.0, 0.0]))
    x = torch.tensor([[[2.0]]], dtype=torch.float64)  # (T=1, B=1, I=1)
    out, (h, c) = lstm(x)
    s = lambda v: 1 / (1 + torch.exp(-torch.tensor(v, dtype=torch.float64)))
    i, f, g, o = s(1.0), s(-0.6 + 1.0), torch.tanh(torch.tensor(1.6, dtype=torch.float64)), s(0.2)
    c_hand = f * 0 + i * g
    torch.testing.assert_close(c.flatten()[0], c_hand)
    torch.testing.assert_close(h.flatten()[0], o * torch.tanh(c_hand))
    # forget_bias shifts only the forget slice of b_ih, after PyTorch's uniform draw
    torch.manual_seed(3)
    a = LSTM(2, 3)
    torch.manual_seed(3)
    b = LSTM(2, 3, forget_bias=1.0)
    diff = b.bias_ih_l0 - a.bias_ih_l0
    torch.testing.assert_close(diff, torch.tensor([0.0] * 3 + [1.0] * 3 + [0.0] * 6))
    torch.testing.assert_close(b.bias_hh_l0, a.bias_hh_l0)


def test_gru_cell_by_hand():
    gru = GRU(1, 1).double()
    with torch.no_grad():
        gru.weight_ih_l0.copy_(torch.tensor([[0.4], [-0.2], [0.7]]))
        gru.weight_hh_l0.copy_(torch.tensor([[0.3], [0.5], [-0.6]]))
        gru.bias_ih_l0.zero_()
        gru.bias_hh_l0.copy_(torch.tensor([0.0, 0.0, 0.25]))
    x = torch.tensor([[[1.5]]], dtype=torch.float64)
    h0 = torch.tensor([[[0.8]]], dtype=torch.float64)
    _, h = gru(x, h0)
    t = lambda v: torch.tensor(v, dtype=torch.float64)
    r = torch.sigmoid(t(0.4 * 1.5 + 0.3 * 0.8))
    z = torch.sigmoid(t(-0.2 * 1.5 + 0.5 * 0.8))
    n = torch.tanh(t(0.7 * 1.5) + r * t(-0.6 * 0.8 + 0.25))
    torch.testing.assert_close(h.flatten()[0], (1 - z) * n + z * 0.8)


def test_sequence_model_patterns_and_validation():
    torch.manual_seed(0)
    x = torch.randn(4, 9, 2)
    for cell in ("elman", "lstm", "gru"):
        one = SequenceModel(2, 3, cell=cell, hidden=5, layers=2)
        assert one(x).shape == (4, 3)
        seq = SequenceModel(2, 3, cell=cell, hidden=5, pattern="seq2seq", bidirectional=True)
        assert seq(x).shape == (4, 9, 3)
    # bidirectional seq2one reads the forward direction's last state and the backward one's first
    bi = SequenceModel(2, 1, cell="gru", hidden=4, bidirectional=True)
    out, _ = bi.rnn(x)
    torch.testing.assert_close(bi(x), bi.out(torch.cat([out[:, -1, :4], out[:, 0, 4:]], -1)))
    for kwargs, match in (({"cell": "transformer"}, "cell"), ({"pattern": "seq2many"}, "pattern"),
                          ({"cell": "gru", "forget_bias": 1.0}, "forget_bias"),
                          ({"cell": "lstm", "nonlinearity": "relu"}, "nonlinearity"), ({"hidden": 0}, "hidden_size")):
        with pytest.raises(ValueError, match=match):
            SequenceModel(2, 1, **kwargs)
    with pytest.raises(ValueError, match="batch, time, features"):
        SequenceModel(2, 1)(torch.randn(4, 2))


def test_gated_cells_carry_gradients_where_elman_vanishes():
    # the same input, T = 60: Elman's ‖∂L/∂h_1‖/‖∂L/∂h_T‖ shrinks geometrically; an LSTM whose forget
    # gate is open (bias 3: f ≈ 0.95) keeps orders of magnitude more of it
    torch.manual_seed(0)
    x = torch.randn(60, 8, 1)
    elman = state_gradient_norms(RNN(1, 32), x)
    lstm = state_gradient_norms(LSTM(1, 32, forget_bias=3.0), x)
    ratio = lambda g: float(g[0] / g[-1])
    assert ratio(elman) < 1e-8
    assert ratio(lstm) > 1e3 * ratio(elman)


def test_forget_gate_bias_init_applies_to_our_lstm():
    from trainlab.init import forget_gate_bias_
    ours, ref = LSTM(2, 3, 2), nn.LSTM(2, 3, 2)
    ours.load_state_dict(ref.state_dict())
    with torch.no_grad():
        forget_gate_bias_(ours)
        forget_gate_bias_(ref)
    for (n, p), (_, q) in zip(ours.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p, q, msg=n)
    assert torch.all(ours.bias_ih_l1[3:6] == 1.0) and torch.all(ours.bias_hh_l1[3:6] == 0.0)
