"""The shell: chains, extra transforms, param groups, skipped parameters, closures, errors."""
import pytest
import torch
import torch.nn.functional as F

import trainlab.optim as O
from optim_helpers import maxdiff, problem, trajectory


def test_chain_is_the_composition_of_its_steps():
    """Chain([clip, L1, Adam, −lr]) == clip the gradients by hand, add λ·sign(w), torch's Adam."""
    lam, c = 1e-3, 0.5
    got = trajectory(lambda p: O.Chain(p, [O.ClipByGlobalNorm(c), O.L1Penalty(lam), O.ScaleByAdam(),
                                           O.ScaleByLearningRate()], lr=0.01), torch.float64, 50)
    model, X, y = problem(torch.float64)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for i in range(50):
        lo = (i * 8) % 32
        opt.zero_grad()
        F.cross_entropy(model(X[lo:lo + 8]), y[lo:lo + 8]).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), c)
        for p in model.parameters():
            p.grad += lam * torch.sign(p.detach())
        opt.step()
    ref = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert maxdiff(got, ref) < 1e-12


def test_add_transforms_equals_the_same_chain_and_keeps_state_apart():
    chained = trajectory(lambda p: O.Adam(p, lr=0.01).add_transforms(O.ClipByValue(0.1), O.Lookahead(4)),
                         torch.float64, 30)
    built = trajectory(lambda p: O.Chain(p, [O.ClipByValue(0.1), O.ScaleByAdam(), O.ScaleByLearningRate(),
                                             O.Lookahead(4)], lr=0.01), torch.float64, 30)
    assert maxdiff(chained, built) < 1e-12
    p = torch.nn.Parameter(torch.ones(3))
    opt = O.Adam([p]).add_transforms(O.Lookahead(2))
    p.grad = torch.ones(3)
    opt.step()
    assert set(opt.state[p]) == {"step", "exp_avg", "exp_avg_sq", "t0.slow"}


def test_two_momentum_stages_in_one_chain_keep_two_buffers():
    p = torch.nn.Parameter(torch.ones(2))
    opt = O.Chain([p], [O.Momentum(0.5), O.Momentum(0.9), O.ScaleByLearningRate()], lr=0.1)
    for g in ([1.0, 2.0], [3.0, -1.0]):
        p.grad = torch.tensor(g)
        opt.step()
    assert set(opt.state[p]) == {"step", "momentum_buffer", "1.momentum_buffer"}
    b1 = 0.5 * torch.tensor([1.0, 2.0]) + torch.tensor([3.0, -1.0])
    assert torch.allclose(opt.state[p]["momentum_buffer"], b1)
    assert torch.allclose(opt.state[p]["1.momentum_buffer"], 0.9 * torch.tensor([1.0, 2.0]) + b1)


def test_param_groups_with_their_own_hyperparameters_match_torch():
    def groups(model):
        w = [p for p in model.parameters() if p.dim() == 2]
        b = [p for p in model.parameters() if p.dim() == 1]
        return [{"params": w, "weight_decay": 0.1}, {"params": b, "lr": 0.05}]
    model_a, X, y = problem(torch.float64)
    model_b, _, _ = problem(torch.float64)
    ours = O.Adam(groups(model_a), lr=0.01, amsgrad=True)
    ref = torch.optim.Adam(groups(model_b), lr=0.01, amsgrad=True)
    a = trajectory(None, torch.float64, 30, model=model_a, opt=ours)
    b = trajectory(None, torch.float64, 30, model=model_b, opt=ref)
    assert maxdiff(a, b) < 1e-12


def test_parameters_without_gradient_are_skipped_and_keep_their_own_step_count():
    """A parameter that misses steps has a smaller t (bias correction per parameter), as in torch."""
    def run(cls):
        a = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
        b = torch.nn.Parameter(torch.tensor([-1.0, 0.5], dtype=torch.float64))
        opt = cls([a, b], lr=0.1)
        for k in range(6):
            a.grad = torch.tensor([0.3, -0.2], dtype=torch.float64) * (k + 1)
            b.grad = None if k % 2 else torch.tensor([1.0, 1.0], dtype=torch.float64) / (k + 1)
            opt.step()
        return torch.cat([a.detach(), b.detach()]), opt, b
    got, opt, b = run(O.Adam)
    ref, _, _ = run(torch.optim.Adam)
    assert maxdiff(got, ref) < 1e-15
    assert opt.state[b]["step"] == 3


def test_step_returns_the_closure_loss_and_none_without_closure():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = O.SGD([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p ** 2).sum()
        loss.backward()
        return loss
    assert opt.step(closure).item() == pytest.approx(5.0)
    p.grad = torch.ones(2)
    assert opt.step() is None


@pytest.mark.parametrize("cls", [O.LBFGS, O.Newton, O.NonlinearCG])
def test_closure_methods_refuse_to_step_without_closure(cls):
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(RuntimeError, match="closure"):
        cls([p]).step()


def test_add_param_group_and_zero_grad_work_as_in_torch():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = O.SGD([a], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": [b], "lr": 0.5})
    a.grad, b.grad = torch.ones(2), torch.ones(2)
    opt.step()
    assert torch.allclose(a, torch.full((2,), 0.9)) and torch.allclose(b, torch.full((2,), 0.5))
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_sparse_gradients_and_complex_parameters_are_refused():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        O.Adam([p]).step()
    c = torch.nn.Parameter(torch.ones(2, dtype=torch.complex64))
    c.grad = torch.ones(2, dtype=torch.complex64)
    with pytest.raises(RuntimeError, match="real parameters"):
        O.SGD([c], lr=0.1).step()


def test_add_transforms_takes_transforms_only():
    with pytest.raises(TypeError, match="Transform"):
        O.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1).add_transforms(torch.optim.SGD)


def test_every_optimizer_is_a_torch_optimizer_with_a_working_state_dict():
    for cls in (O.SGD, O.Adagrad, O.RMSprop, O.Adadelta, O.Adam, O.AdamW, O.Adamax, O.NAdam, O.Rprop,
                O.DeltaBarDelta, O.Newton, O.NonlinearCG, O.LBFGS):
        opt = cls([torch.nn.Parameter(torch.ones(2))])
        assert isinstance(opt, torch.optim.Optimizer)
        state = opt.state_dict()
        assert set(state) == {"state", "param_groups"}


def test_a_copied_optimizer_keeps_its_added_transforms_and_noise_stream():
    import copy
    p = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    opt = O.Adam([p], lr=0.1).add_transforms(O.AddNoise(0.1, seed=3), O.Lookahead(2))
    p.grad = torch.ones(4, dtype=torch.float64)
    opt.step()
    twin = copy.deepcopy(opt)                      # its own copy of p, state and generator
    q = twin.param_groups[0]["params"][0]
    assert [type(t).__name__ for t in twin.chain()] == [type(t).__name__ for t in opt.chain()]
    for _ in range(3):
        p.grad = torch.full((4,), 0.5, dtype=torch.float64)
        q.grad = torch.full((4,), 0.5, dtype=torch.float64)
        opt.step()
        twin.step()
    assert torch.equal(p.detach(), q.detach())
