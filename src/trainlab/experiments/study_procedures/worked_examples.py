"""Studies of worked examples in the notes: numbers that can be recomputed exactly."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.losses import Loss


def cross_entropy_example(ctx: StudyContext, *, labels: list[int], probabilities: list[list[float]]) -> Outcome:
    """The notes' sparse categorical cross-entropy example (notes 002), recomputed.

    The notes evaluate L = −(1/N) Σ_i log ŷ_{i, y_i} on four given softmax rows. We compute that
    formula on the given numbers, and trainlab's sparse categorical cross-entropy on logits
    z = log ŷ (softmax(log ŷ) = ŷ exactly when a row sums to 1), and compare both with PyTorch.
    A row that does not sum to 1 is not a softmax output; for it softmax(log ŷ) renormalizes, so
    the loss function and the hand formula differ, and the study reports by how much.
    """
    y = torch.tensor(labels, dtype=torch.long)
    p = torch.tensor(probabilities, dtype=torch.float64)
    if p.dim() != 2 or len(p) != len(y):
        raise ValueError("probabilities must be one row per label")
    picked = p[torch.arange(len(y)), y]
    per_sample_formula = -picked.log()
    formula = float(per_sample_formula.mean())
    logits = p.log()  # log 0 = −inf is fine: softmax gives those classes probability exactly 0
    loss = Loss("sparse_categorical_cross_entropy")
    per_sample_trainlab = torch.stack([loss(logits[i : i + 1], y[i : i + 1]) for i in range(len(y))])
    trainlab_value = float(loss(logits, y))
    torch_value = float(F.cross_entropy(logits, y))
    row_sums = p.sum(1)
    normalized = (row_sums - 1).abs() <= 1e-12
    diff_normalized = float((per_sample_trainlab - per_sample_formula)[normalized].abs().max()) \
        if normalized.any() else float("nan")
    rows = [(i + 1, int(y[i]), float(picked[i]), float(row_sums[i]), float(per_sample_formula[i]),
             float(per_sample_trainlab[i])) for i in range(len(y))]
    text = [f"Formula on the notes' numbers: L = {formula:.6f} (the notes round each log to 3 decimals "
            f"and report 0.865).",
            f"trainlab sparse categorical cross-entropy on z = log ŷ: {trainlab_value:.6f}; "
            f"torch.nn.functional.cross_entropy: {torch_value:.6f}."]
    bad = [i + 1 for i in range(len(y)) if not normalized[i]]
    if bad:
        text.append(f"Rows {bad} of the notes do not sum to 1 (sums {[round(float(row_sums[i - 1]), 6) for i in bad]}), "
                    "so they are not softmax outputs: a network's softmax would renormalize them, which is why "
                    "the loss function's value differs from the hand formula there. On every row that sums "
                    "to 1 the two agree to machine precision.")
    section = Section("The worked example", text=text,
                      table=(("sample", "label", "ŷ of the label", "row sum", "−log ŷ (formula)",
                              "trainlab loss of the row"), rows))
    metrics = {
        "formula_loss": formula,
        "trainlab_loss": trainlab_value,
        "torch_loss": torch_value,
        "trainlab_vs_torch": abs(trainlab_value - torch_value),
        "per_sample_diff_on_normalized_rows": diff_normalized,
        "rows_not_summing_to_one": float(len(bad)),
    }
    return Outcome(metrics, [section], {"per_sample_formula": per_sample_formula.tolist(),
                                        "per_sample_trainlab": per_sample_trainlab.tolist()})
