"""Captum-compatible classes on fattr's functions, to switch from Captum by changing an import.

``from fattr.captum import IntegratedGradients`` (instead of ``from captum.attr import ...``):
each class has Captum 0.9's name, constructor and ``attribute(...)`` signature
(``additional_forward_args``, ``internal_batch_size`` in rows, ``return_convergence_delta``,
``multiply_by_inputs`` on the constructor), ``.has_convergence_delta()``,
``.multiplies_by_inputs`` and ``.compute_convergence_delta(...)``, and each ``attribute`` is
one call of the fattr function (the neuron classes take Captum's positional ``neuron_selector``
and pass it as fattr's keyword). Randomness comes from torch's global generator here, as in
Captum (fattr's functions take ``generator=`` instead). Captum is not imported.

=============================================  ==========================================  =================================================
Captum call                                    fattr function                              what differs
=============================================  ==========================================  =================================================
``Saliency(f).attribute(x, target)``           ``saliency(f, x, target=)``                 nothing
``InputXGradient(f)``                          ``input_x_gradient``                        nothing
``IntegratedGradients(f).attribute(x, b,       ``integrated_gradients(f, x, b, n_steps,    textbook trapezoid weights (Captum's are
n_steps=, method=, internal_batch_size=)``     method, chunk_size=)``                      ``(n-1)/n`` too small); float64 nodes and sums
``GradientShap(f).attribute(x, dist,           ``gradient_shap(f, x, dist, n_samples,      other random draws (one baseline row shared by all
n_samples=, stdevs=)``                         stdevs, generator=)``                       inputs of a tuple); same expectation
``NoiseTunnel(m).attribute(x, nt_type=,        ``noise_tunnel(fn, kind=, n_samples=,       other random draws; deltas example-first;
nt_samples=, nt_samples_batch_size=)``         stdevs=, chunk_size=)(...)``                ``draw_baseline_from_distrib`` not supported
``DeepLift(m).attribute(x, b)``                ``deeplift(m, x, b)``                       reused modules and functional nonlinearities
                                                                                           supported; max pooling per window
``DeepLiftShap(m)``                            ``deeplift_shap``                           as DeepLift
``LayerActivation(f, layer)``                  ``layer_activation(f, layer, x)``           nothing
``LayerGradientXActivation(f, layer)``         ``layer_gradient_x_activation``             ``grad_kwargs`` not supported
``LayerGradCam(f, layer)``                     ``layer_grad_cam``                          ``grad_kwargs`` not supported
``InternalInfluence(f, layer)``                ``internal_influence``                      trapezoid weights as IG
``LayerConductance(f, layer)``                 ``layer_conductance``                       ``grad_kwargs`` not supported
``LayerIntegratedGradients(f, layer)``         ``layer_integrated_gradients``              trapezoid weights as IG
``LayerGradientShap(f, layer)``                ``layer_gradient_shap``                     random draws as GradientShap
``LayerFeatureAblation(f, layer)``             ``layer_feature_ablation``                  nothing
``LayerFeaturePermutation(f, layer)``         ``layer_feature_permutation``               fattr's shuffles; ``target`` works (Captum
                                                                                           selects it twice: only None works)
``LayerDeepLift(m, layer)``                    ``layer_deeplift``                          as DeepLift
``LayerDeepLiftShap(m, layer)``                ``layer_deeplift_shap``                     as DeepLift
``FeatureAblation(f)``                         ``feature_ablation``                        ``**kwargs`` ignored (as in Captum)
``Occlusion(f)``                               ``occlusion``                               the output's dtype (Captum: float32)
``ShapleyValueSampling(f)``                    ``shapley_value_sampling``                  other random draws; the output's dtype
``ShapleyValues(f)``                           ``shapley_values``                          the ``2^n`` coalitions evaluated once each
``Lime(f, interpretable_model, ...)``          ``lime``                                    other random draws; float64 batched lasso
``KernelShap(f)``                              ``kernel_shap``                             other random draws; float64 least squares
``FeaturePermutation(f, perm_func)``           ``feature_permutation``                     the default ``perm_func``: fattr's shuffles
``GuidedBackprop(m)``, ``Deconvolution(m)``    ``guided_backprop``, ``deconvolution``      every ReLU call rewritten, without hooks
``GuidedGradCam(m, layer)``                    ``guided_grad_cam``                         inputs without spatial dims get the map
``NeuronGradient(f, layer).attribute(x,        ``neuron_gradient(m, layer, x,              only the head (up to the layer) runs; a
neuron_selector)``                             neuron_selector=)``                         callable ``f`` is wrapped in a module
``NeuronIntegratedGradients(f, layer)``        ``neuron_integrated_gradients``             as IG
``NeuronGradientShap(f, layer)``               ``neuron_gradient_shap``                    random draws as GradientShap
``NeuronDeepLift(m, layer)``, ``...Shap``      ``neuron_deeplift``, ``..._shap``           as DeepLift
``NeuronGuidedBackprop``, ``...Deconvolution`` ``neuron_guided_backprop``, ...             as GuidedBackprop
``NeuronFeatureAblation(f, layer)``            ``neuron_feature_ablation``                 only the head runs
``NeuronConductance(f, layer)``                ``neuron_conductance``                      trapezoid weights as IG; a region: the sum of
                                                                                           its neurons' conductances
``LRP(m).attribute(x, target, verbose=)``      ``lrp(m, x, target=, rules=)``              reused modules allowed; no hooks, rules left on
                                                                                           the modules; identity rule after a ReLU as meant
``LayerLRP(m, layer)``                         ``layer_lrp``                               as LRP; one layer (not a list)
=============================================  ==========================================  =================================================

``device_ids`` (DataParallel), ``grad_kwargs`` and ``attribute_future`` raise ``NotImplementedError``.

Example:
  >>> import torch
  >>> from fattr.captum import IntegratedGradients
  >>> model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
  >>> ig = IntegratedGradients(model)
  >>> attr, delta = ig.attribute(torch.randn(4, 3), target=1, return_convergence_delta=True)
  >>> attr.shape, delta.shape, ig.has_convergence_delta(), ig.multiplies_by_inputs
  (torch.Size([4, 3]), torch.Size([4]), True, True)
"""
from fattr._src.compat.base import Attribution
from fattr._src.compat.classes import (Deconvolution, DeepLift, DeepLiftShap, GradientShap, GuidedBackprop,
                                       GuidedGradCam, InputXGradient, IntegratedGradients, InternalInfluence,
                                       LayerActivation, LayerConductance, LayerDeepLift, LayerDeepLiftShap,
                                       LayerFeatureAblation, LayerGradCam, LayerGradientShap, LayerGradientXActivation,
                                       LayerIntegratedGradients, NeuronConductance, NeuronDeconvolution,
                                       NeuronDeepLift, NeuronDeepLiftShap, NeuronFeatureAblation, NeuronGradient,
                                       NeuronGradientShap, NeuronGuidedBackprop, NeuronIntegratedGradients,
                                       NoiseTunnel, Saliency)
from fattr._src.lrp.compat import LRP, LayerLRP
from fattr._src.compat.perturbation import (FeatureAblation, FeaturePermutation, KernelShap, LayerFeaturePermutation,
                                            Lime, Occlusion, ShapleyValueSampling, ShapleyValues)

__all__ = [
    "Attribution",
    "Deconvolution",
    "DeepLift",
    "DeepLiftShap",
    "FeatureAblation",
    "FeaturePermutation",
    "GradientShap",
    "GuidedBackprop",
    "GuidedGradCam",
    "InputXGradient",
    "IntegratedGradients",
    "InternalInfluence",
    "KernelShap",
    "LayerActivation",
    "LayerConductance",
    "LayerDeepLift",
    "LayerDeepLiftShap",
    "LayerFeatureAblation",
    "LayerFeaturePermutation",
    "LayerGradCam",
    "LayerGradientShap",
    "LayerGradientXActivation",
    "LayerIntegratedGradients",
    "LayerLRP",
    "Lime",
    "LRP",
    "NeuronConductance",
    "NeuronDeconvolution",
    "NeuronDeepLift",
    "NeuronDeepLiftShap",
    "NeuronFeatureAblation",
    "NeuronGradient",
    "NeuronGradientShap",
    "NeuronGuidedBackprop",
    "NeuronIntegratedGradients",
    "NoiseTunnel",
    "Occlusion",
    "Saliency",
    "ShapleyValueSampling",
    "ShapleyValues",
]
