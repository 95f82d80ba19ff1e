"""Evaluation metrics of attributions, every perturbation batched: infidelity, sensitivity_max,
deletion and insertion curves, the model-parameter randomisation check."""
