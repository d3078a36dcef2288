"""``bertfit`` for ``torchrun``, whose rank 1 dies once: a worker that crashes mid-run.

    python -m torch.distributed.run --max-restarts 1 ... tests/die_once.py train ...

On the job's first attempt (``TORCHELASTIC_RESTART_COUNT`` 0), the process of rank 1 creates
the file ``$DIE_MARKER`` and exits with status 1 (``os._exit``: no handler, no checkpoint) as
it starts step ``$DIE_AT_STEP``; ``torchrun`` then stops the other processes and starts them
all again with the same command. Used by ``tests/test_distributed.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bertfit.cli import main
from bertfit.train.trainer import Trainer


def dying_at_step(train_step):
    """``Trainer._train_step``, but rank 1 of the first attempt exits at ``$DIE_AT_STEP``."""

    def step(self, batch, train, optimizer, scheduler, number):
        first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
        here = os.environ.get("RANK") == "1" and number == int(os.environ["DIE_AT_STEP"])
        if first_attempt and here:
            Path(os.environ["DIE_MARKER"]).touch()
            os._exit(1)
        return train_step(self, batch, train, optimizer, scheduler, number)

    return step


if __name__ == "__main__":
    Trainer._train_step = dying_at_step(Trainer._train_step)
    sys.exit(main(sys.argv[1:]))
