"""The allow-list of study procedures: the only code a study file can name.

Each procedure is ``fn(ctx: StudyContext, **params) -> Outcome``; a study's ``params`` are checked
against its signature before it runs. Procedures import the techniques they study lazily, so a
study whose technique is missing fails alone, with a clear error, and the others still run.
"""
from __future__ import annotations

from trainlab.experiments.study_procedures.activation_basics import activation_basics
from trainlab.experiments.study_procedures.activations import activation_comparison
from trainlab.experiments.study_procedures.batchnorm_claims import batchnorm_claims
from trainlab.experiments.study_procedures.bn_position import bn_position
from trainlab.experiments.study_procedures.capacity import capacity_sweep
from trainlab.experiments.study_procedures.deep_linear import deep_linear
from trainlab.experiments.study_procedures.descent import gd_variants
from trainlab.experiments.study_procedures.diagnosis import diagnosis_suite
from trainlab.experiments.study_procedures.dying import dying_relus
from trainlab.experiments.study_procedures.init_training import init_training
from trainlab.experiments.study_procedures.initialization import init_depth_profile, init_symmetry, init_tanh_gain
from trainlab.experiments.study_procedures.landscape import landscape_minima
from trainlab.experiments.study_procedures.normalization import bn_learning_rate
from trainlab.experiments.study_procedures.mnist import mnist_recipe, recipe_ablation
from trainlab.experiments.study_procedures.optimizer_claims import adaptive_claims, dynamics_claims
from trainlab.experiments.study_procedures.optimizer_defaults import optimizer_defaults
from trainlab.experiments.study_procedures.optimizers import optimizer_grid
from trainlab.experiments.study_procedures.overfitting import covariate_shift, epochs_budget, overfitting_remedies
from trainlab.experiments.study_procedures.penalty_paths import penalty_paths, penalty_strength
from trainlab.experiments.study_procedures.pretraining import unsupervised_pretraining
from trainlab.experiments.study_procedures.surrogate import surrogate_loss
from trainlab.experiments.study_procedures.pruning import pruning_sweep
from trainlab.experiments.study_procedures.random_matrices import random_matrices
from trainlab.experiments.study_procedures.recurrent import rnn_long_memory
from trainlab.experiments.study_procedures.recurrent_dynamics import (rnn_chaos, rnn_norm, rnn_one_to_many,
                                                                    rnn_output_recurrence)
from trainlab.experiments.study_procedures.variance_init import variance_init
from trainlab.experiments.study_procedures.width import width_sweep
from trainlab.experiments.study_procedures.regularization import (early_stopping, generalization_gap, l1_sparsity,
                                                                 weight_decay_forms)
from trainlab.experiments.study_procedures.worked_examples import cross_entropy_example

PROCEDURES = {
    "activation_basics": activation_basics,
    "activation_comparison": activation_comparison,
    "batchnorm_claims": batchnorm_claims,
    "adaptive_claims": adaptive_claims,
    "bn_learning_rate": bn_learning_rate,
    "bn_position": bn_position,
    "capacity_sweep": capacity_sweep,
    "cross_entropy_example": cross_entropy_example,
    "deep_linear": deep_linear,
    "diagnosis_suite": diagnosis_suite,
    "dying_relus": dying_relus,
    "dynamics_claims": dynamics_claims,
    "early_stopping": early_stopping,
    "gd_variants": gd_variants,
    "generalization_gap": generalization_gap,
    "init_depth_profile": init_depth_profile,
    "init_training": init_training,
    "init_symmetry": init_symmetry,
    "init_tanh_gain": init_tanh_gain,
    "l1_sparsity": l1_sparsity,
    "landscape_minima": landscape_minima,
    "mnist_recipe": mnist_recipe,
    "optimizer_defaults": optimizer_defaults,
    "optimizer_grid": optimizer_grid,
    "overfitting_remedies": overfitting_remedies,
    "epochs_budget": epochs_budget,
    "covariate_shift": covariate_shift,
    "penalty_paths": penalty_paths,
    "penalty_strength": penalty_strength,
    "pruning_sweep": pruning_sweep,
    "random_matrices": random_matrices,
    "recipe_ablation": recipe_ablation,
    "rnn_long_memory": rnn_long_memory,
    "rnn_chaos": rnn_chaos,
    "rnn_one_to_many": rnn_one_to_many,
    "rnn_norm": rnn_norm,
    "rnn_output_recurrence": rnn_output_recurrence,
    "unsupervised_pretraining": unsupervised_pretraining,
    "variance_init": variance_init,
    "surrogate_loss": surrogate_loss,
    "weight_decay_forms": weight_decay_forms,
    "width_sweep": width_sweep,
}
