"""Neuron attribution: an input-space method applied to one neuron of a hidden layer.

``selector``: Captum's ``neuron_selector`` grammar (an index, a region, a callable, or a list of them);
``function``: the neuron as a function of the inputs, ``select(head(inputs))`` from the split model;
``methods``: the gradient, path, SHAP, DeepLift and guided-gradient methods at a neuron;
``conductance``: neuron conductance, which also needs the part of the model after the layer.
"""
