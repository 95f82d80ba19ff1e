"""Pictures of attributions: heat maps, tables of them, and coloured text.

Needs matplotlib for the images (``pip install 'fattr[viz]'``), imported on
first use; :func:`text` needs nothing. ``import fattr`` does not import this
module; the first access to ``fattr.viz`` does.

- :func:`image`: one example's attributions (Captum's ``visualize_image_attr``
  methods and signs; diverging red-white-green colours centred at zero).
- :func:`image_grid`: a table of methods x examples as one Figure.
- :func:`text`: tokens coloured by their attributions, as an HTML snippet.
- :func:`token_matrix`: a language model's output x prompt token attributions
  (:func:`fattr.token_attribution`) as a heat map.
"""
from fattr._src.viz.arrays import METHODS, SIGNS
from fattr._src.viz.grid import image_grid
from fattr._src.viz.image import image
from fattr._src.viz.text import text
from fattr._src.viz.token_matrix import token_matrix

__all__ = ["image", "image_grid", "text", "token_matrix", "METHODS", "SIGNS"]
