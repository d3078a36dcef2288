"""bertfit: fine-tune pretrained BERT-family encoders into text classifiers."""

__version__ = "0.1.0"
