"""Diagnostics: see why a network trains or fails.

Per-layer gradient and weight norms, update-to-weight ratios and weight sparsity
(:mod:`.gradients`); activation statistics, dead and saturated units, activation sparsity and
dead-unit reactivation (:mod:`.neurons`); random-matrix views of the weights (:mod:`.spectra`);
verdicts in words (:mod:`.verdicts`); and :class:`DiagnosticsRecorder`, the callback that records
all of it during :func:`trainlab.fit`.
"""
from trainlab.diagnostics.gradients import grad_norms, probe_gradients, update_ratios, weight_stats
from trainlab.diagnostics.layers import activation_layers, weight_layers
from trainlab.diagnostics.neurons import (ActivationProbe, MaskedLeakyReLU, activation_stats,
                                          reactivate_dead_units)
from trainlab.diagnostics.recorder import DiagnosticsRecorder
from trainlab.diagnostics.spectra import (circular_law_fit, concentration, marchenko_pastur_fit, mp_edges,
                                          mp_eigenvalue_pdf, mp_singular_value_pdf, singular_values)
from trainlab.diagnostics.verdicts import Verdict, diagnose

__all__ = ["ActivationProbe", "DiagnosticsRecorder", "MaskedLeakyReLU", "Verdict", "activation_layers",
           "activation_stats", "circular_law_fit", "concentration", "diagnose", "grad_norms",
           "marchenko_pastur_fit", "mp_edges", "mp_eigenvalue_pdf", "mp_singular_value_pdf", "probe_gradients",
           "reactivate_dead_units", "singular_values", "update_ratios", "weight_layers", "weight_stats"]
