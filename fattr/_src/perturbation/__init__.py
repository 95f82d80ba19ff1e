"""Perturbation methods: attributions from the outputs of ``f`` on perturbed copies of the inputs."""
