"""``Trainer(..., callbacks=[DlprofCallback(out="reports/run")])``: every DataLoader the training
iterates is profiled (accelerate's DataLoaderShard iterates a torch DataLoader inside); results
and reports are written to ``out`` when training ends."""
from __future__ import annotations

from transformers import TrainerCallback

from dlprof.integrations import _Session


class DlprofCallback(TrainerCallback):
    def __init__(self, out: str | None = None) -> None:
        self._session = _Session(out)
        self.out: str | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._session.start()

    def on_train_end(self, args, state, control, **kwargs):
        self.out = self._session.end()
