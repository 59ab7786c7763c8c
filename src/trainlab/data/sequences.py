"""Sequence toy tasks for recurrent networks, generated here and seeded.

Every set is batch first: ``X`` float32 (n, T, features). Each task isolates one thing a
recurrent net must do (notes 002, "the challenge of long-term dependencies"):

=================  ==========================================  ===============================
set                input x_t                                   target
=================  ==========================================  ===============================
:func:`adding`     (value ~ U(0, 1), marker ∈ {0, 1}); two      the sum of the two marked values,
                   markers, one in each half of the sequence    one number per sequence (mse)
:func:`copy_task`  ``length`` symbols, ``delay`` blanks, a      blanks, then the symbols again:
                   delimiter, ``length`` blanks (one-hot)       one class per step (cross-entropy)
:func:`noisy_sine` sin(ω t + φ) + noise, random ω and φ          the clean value one step ahead,
                                                                at every step (mse)
:func:`sine_       one input (f, sin φ, cos φ), a sequence of   sin(2π f t + φ) at t = 1..T:
generation`        length 1                                     one-to-many (mse)
:func:`delayed_    bits b_t ∈ {0, 1}                            b_(t−delay) at every step (0 for
echo`                                                           t ≤ delay; mse)
:func:`running_    bits b_t ∈ {0, 1}                            b_1 ⊕ … ⊕ b_t at every step (mse)
parity`
=================  ==========================================  ===============================

The adding problem (Hochreiter & Schmidhuber 1997, experiment 4) needs a memory of about T
steps: the first marker may sit at t = 1 and the answer is read at t = T. Predicting the
constant 1 (the mean of the sum) gives mse 1/6 — the level a net that remembers nothing reaches.
The copy task (ibid.; Arjovsky et al. 2016) needs ``delay + length`` steps of memory.
"""
from __future__ import annotations

import math

import torch

from trainlab.data.dataset import Dataset

__all__ = ["adding", "copy_task", "noisy_sine", "sine_generation", "delayed_echo", "running_parity",
           "ADDING_BASELINE_MSE"]

ADDING_BASELINE_MSE = 1.0 / 6.0  # Var(u₁ + u₂) for two U(0, 1): the mse of always answering 1


def _positive_int(name: str, value, least: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")


def adding(n_samples: int = 1000, length: int = 50, seed: int = 0) -> Dataset:
    """The adding problem: sum the two values whose marker is 1.

    x_t = (u_t, m_t) with u_t ~ U(0, 1); m_t = 1 at one step drawn uniformly from the first half
    and one from the second half, 0 elsewhere. y = Σ_t u_t·m_t, shape (n, 1).

    Args:
        n_samples: sequences (>= 2).
        length: T, the sequence length (>= 2).
        seed: the generator's seed.
    """
    _positive_int("n_samples", n_samples, 2)
    _positive_int("length", length, 2)
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(n_samples, length, generator=g, dtype=torch.float64)
    half = length // 2
    first = torch.randint(0, half, (n_samples,), generator=g)
    second = torch.randint(half, length, (n_samples,), generator=g)
    markers = torch.zeros(n_samples, length, dtype=torch.float64)
    rows = torch.arange(n_samples)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    X = torch.stack([values, markers], dim=-1)
    y = (values * markers).sum(1, keepdim=True)
    return Dataset(X.float().contiguous(), y.float().contiguous(), "adding")


def copy_task(n_samples: int = 1000, length: int = 5, delay: int = 10, symbols: int = 8, seed: int = 0) -> Dataset:
    """The copy task: read ``length`` symbols, wait ``delay`` steps, then write them back.

    Steps: the symbols (classes 1..K), ``delay − 1`` blanks, a delimiter, ``length`` blanks;
    T = 2·length + delay. Inputs are one-hot over K + 2 channels (the symbols, blank, delimiter).
    Targets (n, T) are class indices: 0 (blank) everywhere except the last ``length`` steps,
    which are the symbols in order. Guessing blanks and then random symbols scores
    (length + delay)/T + length/(K·T) per-step accuracy.

    Args:
        n_samples: sequences (>= 2).
        length: symbols to copy (>= 1).
        delay: steps between the last symbol and the first one to write (>= 1).
        symbols: K, the alphabet size (>= 2).
        seed: the generator's seed.
    """
    _positive_int("n_samples", n_samples, 2)
    _positive_int("length", length)
    _positive_int("delay", delay)
    _positive_int("symbols", symbols, 2)
    g = torch.Generator().manual_seed(seed)
    T = 2 * length + delay
    seq = torch.randint(1, symbols + 1, (n_samples, length), generator=g)
    blank, delimiter = symbols + 1, symbols + 2
    tokens = torch.full((n_samples, T), blank, dtype=torch.long)
    tokens[:, :length] = seq
    tokens[:, length + delay - 1] = delimiter
    X = torch.nn.functional.one_hot(tokens - 1, symbols + 2).float()
    y = torch.zeros(n_samples, T, dtype=torch.long)
    y[:, T - length:] = seq
    return Dataset(X.contiguous(), y.contiguous(), "copy")


def _frequencies_and_phases(n: int, min_freq: float, max_freq: float, g: torch.Generator):
    """f ~ U(min_freq, max_freq) cycles per step and φ ~ U(0, 2π), each of shape (n, 1), float64."""
    if not (0 < min_freq <= max_freq <= 0.5):
        raise ValueError(f"need 0 < min_freq <= max_freq <= 0.5 (cycles per step), got min_freq={min_freq!r}, "
                         f"max_freq={max_freq!r}")
    f = min_freq + (max_freq - min_freq) * torch.rand(n, 1, generator=g, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(n, 1, generator=g, dtype=torch.float64)
    return f, phase


def noisy_sine(n_samples: int = 1000, length: int = 50, noise: float = 0.1, min_freq: float = 0.05,
               max_freq: float = 0.2, seed: int = 0) -> Dataset:
    """Noisy sine waves; predict the clean wave one step ahead at every step.

    x_t = sin(2π f t + φ) + ε_t, ε_t ~ N(0, noise²); y_t = sin(2π f (t + 1) + φ), with
    f ~ U(min_freq, max_freq) cycles per step and φ ~ U(0, 2π) per sequence. X and y are
    (n, T, 1): a sequence-to-sequence regression (``pattern: seq2seq``).

    Args:
        n_samples: sequences (>= 2).
        length: T (>= 2).
        noise: standard deviation of the input noise (>= 0).
        min_freq, max_freq: the range of frequencies, 0 < min_freq <= max_freq <= 0.5 (Nyquist).
        seed: the generator's seed.
    """
    _positive_int("n_samples", n_samples, 2)
    _positive_int("length", length, 2)
    if not (isinstance(noise, (int, float)) and noise >= 0):
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    g = torch.Generator().manual_seed(seed)
    f, phase = _frequencies_and_phases(n_samples, min_freq, max_freq, g)
    t = torch.arange(length + 1, dtype=torch.float64)
    wave = torch.sin(2 * math.pi * f * t + phase)
    X = wave[:, :-1] + noise * torch.randn(n_samples, length, generator=g, dtype=torch.float64)
    y = wave[:, 1:]
    return Dataset(X.unsqueeze(-1).float().contiguous(), y.unsqueeze(-1).float().contiguous(), "noisy_sine")


def sine_generation(n_samples: int = 1000, length: int = 30, min_freq: float = 0.02, max_freq: float = 0.1,
                    seed: int = 0) -> Dataset:
    """One input, a sequence out (notes 002's one-to-many pattern): generate a sine wave from its parameters.

    x = (f / max_freq, sin φ, cos φ) as a sequence of one step, X (n, 1, 3); y_t = sin(2π f t + φ)
    for t = 1..T, y (n, T, 1), with f ~ U(min_freq, max_freq) cycles per step and φ ~ U(0, 2π).
    The phase enters as (sin φ, cos φ) so the input is continuous in φ. Answering 0 at every
    step gives mse ½ (the mean of sin²).

    Args:
        n_samples: sequences (>= 2).
        length: T, the steps to generate (>= 2).
        min_freq, max_freq: the range of frequencies, 0 < min_freq <= max_freq <= 0.5 (Nyquist).
        seed: the generator's seed.
    """
    _positive_int("n_samples", n_samples, 2)
    _positive_int("length", length, 2)
    g = torch.Generator().manual_seed(seed)
    f, phase = _frequencies_and_phases(n_samples, min_freq, max_freq, g)
    t = torch.arange(1, length + 1, dtype=torch.float64)
    y = torch.sin(2 * math.pi * f * t + phase)
    X = torch.cat([f / max_freq, torch.sin(phase), torch.cos(phase)], dim=1)
    return Dataset(X.unsqueeze(1).float().contiguous(), y.unsqueeze(-1).float().contiguous(), "sine_generation")


def _bits(n_samples: int, length: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (n_samples, length), generator=g).double()


def delayed_echo(n_samples: int = 1000, length: int = 20, delay: int = 2, seed: int = 0) -> Dataset:
    """Echo a random bit stream ``delay`` steps late: y_t = b_(t−delay) (0 for t ≤ delay).

    The answer at step t is a past *input* that no recent output holds: the net must keep the
    last ``delay`` bits in its hidden state. An output → hidden recurrence (notes 002 "Type 2")
    sees only x_t and o_(t−1) = b_(t−1−delay), so it cannot do better than chance; a hidden →
    hidden one can. X and y are (n, T, 1) (``pattern: seq2seq``, mse on the 0/1 targets).

    Args:
        n_samples: sequences (>= 2).
        length: T (> delay).
        delay: how many steps late (>= 1).
        seed: the generator's seed.
    """
    _positive_int("n_samples", n_samples, 2)
    _positive_int("delay", delay, 1)
    _positive_int("length", length, delay + 1)
    b = _bits(n_samples, length, seed)
    y = torch.zeros_like(b)
    y[:, delay:] = b[:, :-delay]
    return Dataset(b.unsqueeze(-1).float().contiguous(), y.unsqueeze(-1).float().contiguous(), "delayed_echo")


def running_parity(n_samples: int = 1000, length: int = 20, seed: int = 0) -> Dataset:
    """The parity of the bits so far: y_t = b_1 ⊕ … ⊕ b_t.

    Here the previous answer is all the memory needed (y_t = y_(t−1) ⊕ b_t), so an output →
    hidden recurrence fed its previous output (or, with teacher forcing, the previous target)
    has what it needs. X and y are (n, T, 1) (``pattern: seq2seq``, mse on the 0/1 targets).

    Args:
        n_samples: sequences (>= 2).
        length: T (>= 2).
        seed: the generator's seed.
    """
    _positive_int("n_samples", n_samples, 2)
    _positive_int("length", length, 2)
    b = _bits(n_samples, length, seed)
    y = torch.remainder(torch.cumsum(b, dim=1), 2)
    return Dataset(b.unsqueeze(-1).float().contiguous(), y.unsqueeze(-1).float().contiguous(), "running_parity")
