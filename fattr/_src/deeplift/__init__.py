"""DeepLift (rescale rule) without hooks.

``catalog``: which torch callables are nonlinearities the rule covers, and which it does not;
``rules``: the rescale rule as ordinary operations and the pass that differentiates them;
``interception``: the ``TorchFunctionMode`` that swaps them in during a forward pass;
``engine``: the two passes that give the multipliers;
``deeplift`` and ``layer``: the public methods. The same interception carries other rules:
``guided`` (guided backpropagation's and deconvolution's ReLU rules, their mode and gradient pass) and
``guided_backprop`` (the public ``guided_backprop``, ``deconvolution``, ``guided_grad_cam``).
"""
