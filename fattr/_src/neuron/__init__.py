"""Neuron attribution: an input-space method applied to one neuron (a function of the inputs) of a hidden
layer; conductance also runs the part of the model after the layer."""
