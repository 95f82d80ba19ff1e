"""Evaluation metrics of attributions, every perturbation batched, differentiable where defined.

- :func:`infidelity`, :func:`sensitivity_max`: Captum 0.9's definitions and signatures.
- :func:`deletion`, :func:`insertion`: faithfulness curves and their areas.
- :func:`randomization_check`: Adebayo et al.'s model-parameter randomisation sanity check.
"""
from fattr._src.metrics.curves import deletion, insertion
from fattr._src.metrics.infidelity import infidelity
from fattr._src.metrics.randomization import randomization_check
from fattr._src.metrics.sensitivity import sensitivity_max

__all__ = ["deletion", "infidelity", "insertion", "randomization_check", "sensitivity_max"]
