"""``python tests/killing_train.py ARGS``: ``python -m mlrank.train ARGS``, except that on torchrun's first
attempt rank 1 kills itself (SIGKILL, no clean-up) as epoch 2 begins, when last.pt holds an
earlier epoch: a machine lost mid-run, for
tests/test_train.py's torchrun restart test."""

import os
import signal
import sys

from mlrank import train
from mlrank.cli import run_cli
from mlrank.ranking import method

if os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0" and os.environ.get("RANK") == "1":
    run_epoch = method.run_epoch

    def dies_in_epoch_two(cfg, model, loader, optimizer, scheduler, ctx, epoch, *rest):
        if epoch == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return run_epoch(cfg, model, loader, optimizer, scheduler, ctx, epoch, *rest)

    method.run_epoch = dies_in_epoch_two

sys.exit(run_cli(lambda: train.main(sys.argv[1:])))
