"""Why the model chose its label: signed attributions of whole input words.

* :mod:`bertfit.explain.words`: one input row as words, packed as the classifier packs it;
* :mod:`bertfit.explain.occlusion`: mask each word and see the logit fall (no gradients, so
  the torch-free exported predictor can run it);
* :mod:`bertfit.explain.integrated_gradients`: Captum's integrated gradients on the word
  embeddings of the PyTorch model;
* :mod:`bertfit.explain.explanation`: the :class:`Explanation` both give;
* :mod:`bertfit.explain.explain`: one row of a predictor through either method.

``classifier.explain(...)`` (:class:`~bertfit.inference.TextClassifier`) and the exported
predictor's ``explain(...)`` are the usual entry points; ``bertfit explain`` prints them.
"""

from __future__ import annotations

from bertfit.explain.explanation import METHODS, Explanation, TextAttributions, WordAttribution

__all__ = ["METHODS", "Explanation", "TextAttributions", "WordAttribution"]
