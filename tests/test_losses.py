"""Losses against PyTorch's, the notes' worked example, and label smoothing."""
import math

import pytest
import torch
import torch.nn.functional as F

from trainlab.losses import Loss, binary_cross_entropy, cross_entropy, mse


def _logits(n=64, k=10, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g, dtype=dtype) * 3, torch.randint(0, k, (n,), generator=g)


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.1, 0.3, 1.0])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_label_smoothing_matches_torch_sparse_and_dense(eps, dtype, tol):
    z, y = _logits(dtype=dtype)
    want = F.cross_entropy(z, y, label_smoothing=eps)
    assert torch.allclose(cross_entropy(z, y, label_smoothing=eps), want, rtol=tol, atol=tol)
    dense = F.one_hot(y, 10).to(dtype)
    assert torch.allclose(cross_entropy(z, dense, label_smoothing=eps),
                          F.cross_entropy(z, dense, label_smoothing=eps), rtol=tol, atol=tol)
    # and through the named loss
    assert torch.allclose(Loss("cross_entropy", label_smoothing=eps)(z, y), want, rtol=tol, atol=tol)


def test_label_smoothing_by_hand():
    # K = 4, ε = 0.2: target (1 − ε)·onehot + ε/K = [0.05, 0.85, 0.05, 0.05] for class 1
    z = torch.tensor([[1.0, 2.0, 0.5, -1.0]], dtype=torch.float64)
    logp = z - torch.logsumexp(z, 1, keepdim=True)
    target = torch.tensor([[0.05, 0.85, 0.05, 0.05]], dtype=torch.float64)
    assert cross_entropy(z, torch.tensor([1]), 0.2).item() == pytest.approx(-(target * logp).sum().item(), abs=1e-14)
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy(z, torch.tensor([1]), 1.5)
    with pytest.raises(ValueError, match="cross_entropy"):
        Loss("mse", label_smoothing=0.1)


def test_soft_targets_match_torch():
    z, _ = _logits(seed=3)
    p = torch.softmax(torch.randn(64, 10, dtype=torch.float64), 1)
    assert torch.allclose(cross_entropy(z, p), F.cross_entropy(z, p), rtol=1e-12, atol=1e-12)


def test_mse_and_bce_with_logits_match_torch():
    g = torch.Generator().manual_seed(1)
    for dtype, tol in ((torch.float32, 1e-6), (torch.float64, 1e-12)):
        z = torch.randn(50, 3, generator=g, dtype=dtype) * 5
        y = torch.randn(50, 3, generator=g, dtype=dtype)
        assert torch.allclose(mse(z, y), F.mse_loss(z, y), rtol=tol, atol=tol)
        z1 = torch.randn(50, 1, generator=g, dtype=dtype) * 20  # large logits: the stable form matters
        t = torch.randint(0, 2, (50,), generator=g)
        assert torch.allclose(binary_cross_entropy(z1, t), F.binary_cross_entropy_with_logits(z1, t.view(-1, 1).to(dtype)),
                              rtol=tol, atol=tol)
    # no overflow where the naive formula log(σ(z)) gives −inf
    z = torch.tensor([[-1000.0], [1000.0]])
    assert binary_cross_entropy(z, torch.tensor([1, 0])).item() == pytest.approx(1000.0)


def test_gradients_match_torch():
    z, y = _logits()
    z1 = z.clone().requires_grad_()
    z2 = z.clone().requires_grad_()
    cross_entropy(z1, y, 0.1).backward()
    F.cross_entropy(z2, y, label_smoothing=0.1).backward()
    assert torch.allclose(z1.grad, z2.grad, rtol=1e-12, atol=1e-14)


def test_notes_worked_sparse_categorical_example():
    # notes 002: four MNIST samples with true classes 3, 7, 1, 9 and these softmax outputs
    probs = torch.tensor([
        [0.05, 0.05, 0.05, 0.70, 0.05, 0.05, 0.0, 0.0, 0.0, 0.05],
        [0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.15, 0.05, 0.10],
        [0.05, 0.60, 0.10, 0.05, 0.05, 0.05, 0.0, 0.05, 0.0, 0.05],
        [0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.50],
    ], dtype=torch.float64)
    y = torch.tensor([3, 7, 1, 9])
    # Only p_y enters the loss. Sample 4 as printed sums to 0.95, so rescale the other classes of
    # each row to make it a distribution with the notes' p_y, then take logits z = log p.
    onehot = torch.nn.functional.one_hot(y, 10).bool()
    p_y = probs[onehot].view(-1, 1)
    rest = probs.clamp_min(1e-6).masked_fill(onehot, 0)
    rest = rest / rest.sum(1, keepdim=True) * (1 - p_y)
    z = torch.log(torch.where(onehot, p_y.expand_as(probs), rest))
    assert torch.allclose(torch.softmax(z, 1)[onehot], torch.tensor([0.70, 0.15, 0.60, 0.50], dtype=torch.float64))
    loss = cross_entropy(z, y).item()
    exact = -(math.log(0.70) + math.log(0.15) + math.log(0.60) + math.log(0.50)) / 4
    assert loss == pytest.approx(exact, abs=1e-9)
    assert round(loss, 2) == 0.86 and abs(loss - 0.865) < 1e-3  # the notes round the logs first: 0.865
