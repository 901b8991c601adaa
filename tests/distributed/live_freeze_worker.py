"""One torchrun worker for test_freeze_schedule_torchrun: trains RUN.toml into OUT, sends
a live freeze change at its first batch (each process, as a window attached to it would),
and writes a digest of the gradients of every step to OUT.rank<R>.txt. DDP averages them
over the processes, so the files are equal unless a parameter trained on one alone (the
model itself is made equal at each epoch's end, when DDP's Join syncs it).

    torchrun --nproc-per-node 2 live_freeze_worker.py RUN.toml OUT
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from desktop_tl.core import events as ev
from desktop_tl.core.config import RunConfig
from desktop_tl.core.distributed import environment_rank
from desktop_tl.core.training import Trainer


def gradients_digest(model, digest) -> None:
    for name, param in model.named_parameters():
        if param.grad is not None:
            digest.update(name.encode())
            digest.update(param.grad.detach().cpu().contiguous().numpy().tobytes())


def main(run_file: str, out: str) -> int:
    config = RunConfig.load(run_file)
    config.out = out
    trainer = Trainer(config)
    digest = hashlib.sha256()

    def on_batch(event):
        if isinstance(event, ev.BatchEnded):
            gradients_digest(trainer.built.model, digest)  # this step's, kept until the next
            if event.step == 0:
                trainer.send(ev.SetFreeze({"backbone.blocks": True}))

    trainer.subscribe(on_batch)
    finished = trainer.run()
    rank = environment_rank()
    Path(f"{out}.rank{rank}.txt").write_text(digest.hexdigest())
    print(f"rank {rank}: {finished.status} {finished.reason}")
    return 0 if finished.status == "completed" else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
