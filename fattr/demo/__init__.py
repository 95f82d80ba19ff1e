"""``python -m fattr.demo``: fattr on a real classifier, end to end, in well under a minute on a CPU.

1. trains a small CNN on scikit-learn's bundled 8x8 digits (no download);
2. attributes 8 held-out digits with every method in :func:`fattr.methods`, each
   one function call (layer methods at the last convolution, upsampled to the
   image with ``fattr.interpolate``), timed, with completeness deltas and, when
   Captum is installed, the largest difference from Captum's implementation;
3. trains a second copy with an attribution prior: a penalty on the integrated
   gradients outside the central region of the image, backpropagated through
   ``fattr.integrated_gradients`` in the training loop;
4. scores every input-space method's attributions with ``fattr.metrics`` (deletion and insertion
   AUC, infidelity), a table in the report;
5. writes ``attributions.png``, ``prior.png`` and ``report.md`` to ``--out``.

Needs the ``demo`` extra (matplotlib, scikit-learn): ``pip install 'fattr[demo]'``
or ``make demo``. Every random draw comes from explicit seeds, so runs repeat.
"""
