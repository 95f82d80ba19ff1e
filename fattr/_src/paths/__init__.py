"""The modern path methods, each a short composition of the path engine (:mod:`..path`,
:mod:`..gradients`, :mod:`..quadrature`): IDGI, expected gradients, integrated Hessians,
Guided IG and Blur IG."""
