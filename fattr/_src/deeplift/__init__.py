"""DeepLift's rescale rule and the ReLU rules of guided backpropagation and deconvolution, swapped in for
torch's functions during a forward pass (no hooks); each module's docstring says its part."""
