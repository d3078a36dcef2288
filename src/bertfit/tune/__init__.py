"""``bertfit tune``: a hyperparameter search over training runs, on Optuna.

* :mod:`bertfit.tune.space`: what is searched (the default space, a ``--space`` YAML file);
* :mod:`bertfit.tune.storage`: where the study lives (SQLite in the output folder, or a
  shared database), and one process per output folder;
* :mod:`bertfit.tune.objective`: one trial, an ordinary training run per seed, reporting each
  evaluation to Optuna so that its pruner can stop it;
* :mod:`bertfit.tune.outputs`: what a search leaves: ``trials.csv``, ``best.yaml``, the best
  trial's model in ``best/``;
* :mod:`bertfit.tune.study`: the search itself, as ``bertfit tune`` runs it;
* :mod:`bertfit.tune.report`: the numbers ``bertfit plot tune`` draws.

Optuna is the tune extra; this package's ``__init__`` does not import it, so
:func:`require_optuna` can say how to install it.
"""

from __future__ import annotations

from bertfit.errors import ConfigError

INSTALL_HINT = "pip install 'bertfit[tune]'"


def require_optuna():
    """The ``optuna`` module, or :class:`ConfigError` saying how to install it."""
    try:  # the tune extra: only for tune and its plot
        import optuna
    except ImportError:
        raise ConfigError(f"bertfit tune needs Optuna: {INSTALL_HINT}") from None
    return optuna
