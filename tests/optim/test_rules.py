"""One (or a few) steps of every optimizer against its update rule written out by hand.

Float64 tensors, gradients set directly; each case runs with the fast path and the readable rule.
"""
import math

import pytest
import torch

import trainlab.optim as O

P0 = [1.0, -2.0, 0.5, 0.0, 3.0]
G1 = [0.3, -0.1, 2.0, 0.0, -1.5]
G2 = [-0.2, -0.4, 1.0, 0.5, -1.0]
G3 = [0.1, 0.2, -0.5, 0.5, -0.3]


def t(values):
    return torch.tensor(values, dtype=torch.float64)


def run(make, grads, foreach=True, **kwargs):
    """Parameters after one step per gradient in ``grads``; returns (p, optimizer)."""
    p = torch.nn.Parameter(t(P0))
    opt = make([p], foreach=foreach, **kwargs) if foreach is not None else make([p], **kwargs)
    for g in grads:
        p.grad = t(g)
        opt.step()
    return p.detach(), opt


def close(a, b):
    assert torch.allclose(a, b, rtol=1e-13, atol=1e-15), (a, b)


FOREACH = pytest.mark.parametrize("foreach", [True, False], ids=["fast", "readable"])


@FOREACH
def test_sgd_plain_and_weight_decay(foreach):
    p, _ = run(O.SGD, [G1], foreach, lr=0.1, weight_decay=0.01)
    close(p, t(P0) - 0.1 * (t(G1) + 0.01 * t(P0)))


@FOREACH
def test_sgd_maximize_ascends(foreach):
    p, _ = run(O.SGD, [G1], foreach, lr=0.1, maximize=True)
    close(p, t(P0) + 0.1 * t(G1))


@FOREACH
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_pytorch_form(foreach, nesterov):
    lr, mu, d = 0.1, 0.9, 0.0 if nesterov else 0.3
    p, _ = run(O.SGD, [G1, G2], foreach, lr=lr, momentum=mu, dampening=d, nesterov=nesterov)
    g1, g2 = t(G1), t(G2)
    buf1 = g1                                   # PyTorch starts the buffer at g
    p1 = t(P0) - lr * (g1 + mu * buf1 if nesterov else buf1)
    buf2 = mu * buf1 + (1 - d) * g2
    p2 = p1 - lr * (g2 + mu * buf2 if nesterov else buf2)
    close(p, p2)


@FOREACH
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_ema_form(foreach, nesterov):
    lr, beta = 0.1, 0.8
    p, _ = run(O.SGD, [G1, G2], foreach, lr=lr, momentum=beta, nesterov=nesterov, momentum_form="ema")
    g1, g2 = t(G1), t(G2)
    v1 = (1 - beta) * g1                        # v starts at 0
    p1 = t(P0) - lr * (beta * v1 + (1 - beta) * g1 if nesterov else v1)
    v2 = beta * v1 + (1 - beta) * g2
    p2 = p1 - lr * (beta * v2 + (1 - beta) * g2 if nesterov else v2)
    close(p, p2)


@FOREACH
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_velocity_form(foreach, nesterov):
    """Goodfellow Alg. 8.2: v ← αv − εg; θ ← θ + v (Keras/scikit-learn Nesterov: θ ← θ + αv − εg)."""
    eps, alpha = 0.1, 0.9
    p, _ = run(O.SGD, [G1, G2], foreach, lr=eps, momentum=alpha, nesterov=nesterov, momentum_form="velocity")
    g1, g2 = t(G1), t(G2)
    v1 = -eps * g1
    p1 = t(P0) + (alpha * v1 - eps * g1 if nesterov else v1)
    v2 = alpha * v1 - eps * g2
    p2 = p1 + (alpha * v2 - eps * g2 if nesterov else v2)
    close(p, p2)


@FOREACH
@pytest.mark.parametrize("placement", ["outside", "inside"])
def test_adagrad(foreach, placement):
    lr, eps, r0, decay = 0.5, 1e-3, 0.1, 0.2
    p, _ = run(O.Adagrad, [G1, G2], foreach, lr=lr, eps=eps, initial_accumulator_value=r0, lr_decay=decay,
               eps_placement=placement)
    den = (lambda r: r.sqrt() + eps) if placement == "outside" else (lambda r: (r + eps).sqrt())
    r1 = r0 + t(G1) ** 2
    p1 = t(P0) - lr * t(G1) / den(r1)
    r2 = r1 + t(G2) ** 2
    p2 = p1 - lr / (1 + decay) * t(G2) / den(r2)   # inverse-time decay at t = 2
    close(p, p2)


@FOREACH
@pytest.mark.parametrize("placement", ["outside", "inside"])
def test_adagrad_notes_variant_divides_by_the_earlier_squared_gradients(foreach, placement):
    # notes 003: θ_t = θ_{t−1} − η g_t / √(α_{t−1} + ε), α_{t−1} = r₀ + Σ_{i<t} g_i²
    lr, eps, r0 = 0.5, 1e-3, 0.1
    p, _ = run(O.Adagrad, [G1, G2], foreach, lr=lr, eps=eps, initial_accumulator_value=r0,
               eps_placement=placement, include_current=False)
    den = (lambda r: r.sqrt() + eps) if placement == "outside" else (lambda r: (r + eps).sqrt())
    r0t = torch.full((5,), r0, dtype=torch.float64)
    p1 = t(P0) - lr * t(G1) / den(r0t)
    p2 = p1 - lr * t(G2) / den(r0t + t(G1) ** 2)
    close(p, p2)


@FOREACH
@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("placement", ["outside", "inside"])
def test_rmsprop(foreach, centered, placement):
    lr, rho, eps, mu = 0.01, 0.9, 1e-4, 0.5
    p, _ = run(O.RMSprop, [G1, G2], foreach, lr=lr, alpha=rho, eps=eps, centered=centered, momentum=mu,
               eps_placement=placement)
    den = (lambda r: r.sqrt() + eps) if placement == "outside" else (lambda r: (r + eps).sqrt())
    r, gbar, buf, theta = torch.zeros(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64), None, t(P0)
    for g in (t(G1), t(G2)):
        r = rho * r + (1 - rho) * g * g
        gbar = rho * gbar + (1 - rho) * g
        s = g / den(r - gbar * gbar if centered else r)
        buf = s if buf is None else mu * buf + s
        theta = theta - lr * buf
    close(p, theta)


@FOREACH
def test_adadelta(foreach):
    lr, rho, eps = 1.0, 0.95, 1e-6
    p, _ = run(O.Adadelta, [G1, G2], foreach, lr=lr, rho=rho, eps=eps)
    Eg, Ed, theta = torch.zeros(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64), t(P0)
    for g in (t(G1), t(G2)):
        Eg = rho * Eg + (1 - rho) * g ** 2
        delta = torch.sqrt(Ed + eps) / torch.sqrt(Eg + eps) * g
        Ed = rho * Ed + (1 - rho) * delta ** 2
        theta = theta - lr * delta
    close(p, theta)


def adam_by_hand(grads, lr, b1, b2, eps, amsgrad=False, bias_correction=True, eps_mode="outside", wd=0.0,
                 decoupled=False):
    m = v = vmax = torch.zeros(5, dtype=torch.float64)
    theta = t(P0)
    for k, g in enumerate(grads, start=1):
        g = t(g)
        if wd and decoupled:
            theta = theta * (1 - lr * wd)
        elif wd:
            g = g + wd * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = torch.maximum(vmax, v)
        vv = vmax if amsgrad else v
        c1, c2 = (1 - b1 ** k, 1 - b2 ** k) if bias_correction else (1.0, 1.0)
        if eps_mode == "hat":
            theta = theta - lr * math.sqrt(c2) / c1 * m / (vv.sqrt() + eps)
        elif eps_mode == "inside":
            theta = theta - lr * (m / c1) / (vv / c2 + eps).sqrt()
        else:
            theta = theta - lr * (m / c1) / ((vv / c2).sqrt() + eps)
    return theta


@FOREACH
@pytest.mark.parametrize("variant", [
    {}, {"amsgrad": True}, {"bias_correction": False}, {"eps_mode": "hat"}, {"eps_mode": "inside"},
    {"weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled_weight_decay": True},
], ids=["default", "amsgrad", "no-bias-correction", "eps-hat", "eps-inside", "l2", "decoupled"])
def test_adam(foreach, variant):
    lr, b1, b2, eps = 0.01, 0.8, 0.9, 1e-3   # big eps and small betas make every term visible
    grads = [G1, G2, G3]  # G3 is smaller than G2 in places: v decreases there, so AMSGrad differs
    p, _ = run(O.Adam, grads, foreach, lr=lr, betas=(b1, b2), eps=eps, **variant)
    want = adam_by_hand(grads, lr, b1, b2, eps, variant.get("amsgrad", False), variant.get("bias_correction", True),
                        variant.get("eps_mode", "outside"), variant.get("weight_decay", 0.0),
                        variant.get("decoupled_weight_decay", False))
    close(p, want)
    if variant:  # every variant really changes the result
        assert not torch.allclose(p, adam_by_hand(grads, lr, b1, b2, eps), rtol=1e-6)


@FOREACH
def test_adamw_is_adam_with_decoupled_decay(foreach):
    p, _ = run(O.AdamW, [G1, G2], foreach, lr=0.01, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.5)
    close(p, adam_by_hand([G1, G2], 0.01, 0.8, 0.9, 1e-3, wd=0.5, decoupled=True))


def test_bias_correction_fixes_the_first_step_size():
    """Without the correction the first Adam step is (1 − β₁)/√(1 − β₂) ≈ 3.16 times lr per coordinate."""
    g = [[1e-3] * 5]
    p_on, _ = run(O.Adam, g, lr=0.01, eps=0.0)
    p_off, _ = run(O.Adam, g, lr=0.01, eps=0.0, bias_correction=False)
    close(t(P0) - p_on, torch.full((5,), 0.01, dtype=torch.float64))
    close(t(P0) - p_off, torch.full((5,), 0.01 * 0.1 / math.sqrt(0.001), dtype=torch.float64))


@FOREACH
def test_adamax(foreach):
    lr, b1, b2, eps = 0.02, 0.8, 0.9, 1e-3
    p, _ = run(O.Adamax, [G1, G2], foreach, lr=lr, betas=(b1, b2), eps=eps)
    m = u = torch.zeros(5, dtype=torch.float64)
    theta = t(P0)
    for k, g in enumerate((t(G1), t(G2)), start=1):
        m = b1 * m + (1 - b1) * g
        u = torch.maximum(b2 * u, g.abs() + eps)
        theta = theta - lr / (1 - b1 ** k) * m / u
    close(p, theta)


@FOREACH
def test_nadam(foreach):
    lr, b1, b2, eps, psi = 0.02, 0.8, 0.9, 1e-3, 0.004
    p, _ = run(O.NAdam, [G1, G2], foreach, lr=lr, betas=(b1, b2), eps=eps, momentum_decay=psi)
    mu = lambda k: b1 * (1 - 0.5 * 0.96 ** (k * psi))  # noqa: E731
    m = v = torch.zeros(5, dtype=torch.float64)
    theta, prod = t(P0), 1.0
    for k, g in enumerate((t(G1), t(G2)), start=1):
        prod *= mu(k)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        den = (v / (1 - b2 ** k)).sqrt() + eps
        theta = theta - lr * ((1 - mu(k)) / (1 - prod) * g / den + mu(k + 1) / (1 - prod * mu(k + 1)) * m / den)
    close(p, theta)


def test_rprop_step_sizes():
    """Δ grows by η₊ while the sign holds, shrinks by η₋ on a flip (and that step is skipped)."""
    lr, (em, ep) = 0.1, (0.5, 1.2)
    grads = [[1.0, 1.0], [2.0, -1.0], [3.0, -1.0], [0.5, 1.0]]
    p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = O.Rprop([p], lr=lr, etas=(em, ep), step_sizes=(1e-6, 50))
    steps = []
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        before = p.detach().clone()
        opt.step()
        steps.append((p.detach() - before).tolist())
    # coordinate 0: signs +,+,+,+ → Δ = 0.1, 0.12, 0.144, 0.1728, moving against the gradient
    assert steps[0][0] == pytest.approx(-0.1) and steps[1][0] == pytest.approx(-0.12)
    assert steps[2][0] == pytest.approx(-0.144) and steps[3][0] == pytest.approx(-0.1728)
    # coordinate 1: +; flip (Δ → 0.05, no step, g forgotten); g_prev = 0 so Δ stays, step; flip again
    assert steps[0][1] == pytest.approx(-0.1)
    assert steps[1][1] == 0.0
    assert steps[2][1] == pytest.approx(+0.05)
    assert steps[3][1] == 0.0
    assert opt.state[p]["step_size"].tolist() == pytest.approx([0.1 * 1.2 ** 3, 0.025])


def test_delta_bar_delta_rates_move_exactly_as_defined():
    lr, kappa, phi, theta = 0.1, 0.05, 0.5, 0.7
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = O.DeltaBarDelta([p], lr=lr, kappa=kappa, phi=phi, theta=theta)
    grads = [[1.0, 1.0, 0.0], [1.0, -1.0, 2.0], [2.0, -1.0, -1.0], [1.0, 3.0, 1.0]]
    rate = torch.full((3,), lr, dtype=torch.float64)
    bar = torch.zeros(3, dtype=torch.float64)
    w = torch.zeros(3, dtype=torch.float64)
    for g in grads:
        g = torch.tensor(g, dtype=torch.float64)
        agree = bar * g
        rate = torch.where(agree > 0, rate + kappa, torch.where(agree < 0, rate * (1 - phi), rate))
        bar = (1 - theta) * g + theta * bar
        w = w - rate * g
        p.grad = g
        opt.step()
        close(opt.state[p]["rate"], rate)
        close(opt.state[p]["bar_delta"], bar)
        close(p.detach(), w)
    # the rates really moved both ways: coordinate 0 agreed 3 times (+3κ); coordinate 1 flipped,
    # agreed, flipped: 0.1 → 0.05 → 0.1 → 0.05
    close(opt.state[p]["rate"][:2], torch.tensor([lr + 3 * kappa, lr * (1 - phi)], dtype=torch.float64))
