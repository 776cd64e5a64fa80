"""``trainer = L.Trainer(callbacks=[DlprofCallback(out="reports/run")])``: every DataLoader the
fit iterates (training, validation, the sanity check's) is profiled; results and reports are
written to ``out`` when the fit ends."""
from __future__ import annotations

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the older package name
    from pytorch_lightning.callbacks import Callback

from dlprof.integrations import _Session


class DlprofCallback(Callback):
    def __init__(self, out: str | None = None) -> None:
        super().__init__()
        self._session = _Session(out)
        self.out: str | None = None  # where the results went, once the fit has ended

    def on_fit_start(self, trainer, pl_module) -> None:
        self._session.start()

    def on_fit_end(self, trainer, pl_module) -> None:
        self.out = self._session.end()
