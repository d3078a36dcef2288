"""Training: the optimizer and its learning-rate schedule, the training loop, and metrics.

Import the submodules you need (``bertfit.train.optim``, ``bertfit.train.metrics``); nothing is
imported eagerly here, so reading a schedule or a metric never loads torch.
"""
