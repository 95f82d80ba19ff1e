"""Code written as users write it, type-checked (not run) by ``make typecheck`` (pyproject's mypy ``files``).

fattr's public signatures must accept every form the conventions allow, and a result must be usable as
the tensor it is for a tensor input, without casts: a change of a public type that breaks this fails mypy.
"""
from __future__ import annotations

from typing import Dict, List

import torch
from torch import nn

import fattr


def usage(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, images: torch.Tensor,
          labels: torch.Tensor) -> List[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    two = lambda a, b, scale: model(torch.cat([a, b], 1) * scale)  # noqa: E731
    out: List[torch.Tensor] = []
    attr = fattr.integrated_gradients(model, x, baselines=0.0, n_steps=8, target=2)
    out.append(attr.abs().sum())
    attr, delta = fattr.integrated_gradients(model, x, torch.zeros(1, 4), target=[0, 1, 2, 0],
                                             method="riemann_trapezoid", return_delta=True)
    out += [attr.shape[0] * delta, fattr.completeness_delta(model, x, None, attr, target=labels)]
    pair = fattr.saliency(two, (x, y), target=labels, args=(torch.ones(4, 1),), abs=False)
    out += [pair[0], pair[1]]
    smooth = fattr.noise_tunnel(fattr.saliency, n_samples=4, stdevs=0.1)
    out.append(smooth(model, x, target=1, generator=g))
    out.append(fattr.gradient_shap(model, x, torch.randn(5, 4), stdevs=(0.1,), target=0, generator=g))
    out.append(fattr.expected_gradients(model, x, lambda: torch.randn(5, 4), target=0, generator=g))
    out.append(fattr.deeplift(model, x, target=torch.tensor([0, 1, 2, 0])))
    out.append(fattr.layer_integrated_gradients(model, model[1], x, target=0))
    per_layer = fattr.layer_activation(model, ["0", "2"], x)
    out += list(per_layer)
    out.append(fattr.layer_grad_cam(lambda v: model(v), "1", x, target=0, attribute_to_layer_input=True))
    out.append(fattr.neuron_gradient(model, "1", x, neuron_selector=(slice(0, 2),)))
    out.append(fattr.neuron_integrated_gradients(model, "1", x, neuron_selector=lambda a: a.sum(1)))
    groups = torch.tensor([[0, 0, 1, 1]])
    out.append(fattr.feature_ablation(model, x, 0.0, target=1, feature_mask=groups, perturbations_per_eval=2))
    out.append(fattr.kernel_shap(model, x, target=1, feature_mask=groups, n_samples=8, generator=g))
    out.append(fattr.occlusion(model, images, (1, 2, 2), strides=(1, 1, 1), target=0))
    out.append(fattr.metrics.infidelity(model, lambda v: (v, v), x, attr, target=0, generator=g))
    curve, area = fattr.metrics.deletion(model, x, attr, target=0, n_steps=4)
    out += [curve, area]
    kwargs: Dict[str, torch.Tensor] = {"attention_mask": mask}
    out.append(fattr.layer_gradient_x_activation(lambda v, attention_mask: model(v * attention_mask), "0", x,
                                                 target=0, kwargs=kwargs))
    head, tail = fattr.split(model, "1")
    out.append(tail(*head(x)))
    store = fattr.attribute_dataset("integrated_gradients", model, list(zip(x, labels, strict=True)), "out",
                                    target="label", n_steps=4)
    out.append(torch.as_tensor(len(store)))
    return out
