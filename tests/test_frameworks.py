"""Training loops nobody here wrote: a Lightning `Trainer.fit` and a Hugging Face `Trainer.train`
script, each profiled unmodified by `dlprof run`, and by dlprof's callbacks. Tiny models on CPU;
each sample sleeps 5 ms (storage), so the loaders' fetch and the loop's wait are known."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.test_results_and_cli import REPO

DLPROF = [sys.executable, "-m", "dlprof"]

DATA = """
    import time
    import torch
    from torch.utils.data import Dataset

    class Records(Dataset):
        def __init__(self, n):
            self.n = n
        def __len__(self):
            return self.n
        def __getitem__(self, i):
            time.sleep(0.005)  # a read from storage
            return {"x": torch.full((8,), float(i % 7)), "labels": i % 2}
"""

LIGHTNING = DATA + """
    import os
    import sys
    import lightning as L
    from torch.utils.data import DataLoader

    class Model(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(8, 2)
        def training_step(self, batch, i):
            return torch.nn.functional.cross_entropy(self.layer(batch["x"]), batch["labels"])
        def validation_step(self, batch, i):
            self.log("val_loss", torch.nn.functional.cross_entropy(self.layer(batch["x"]), batch["labels"]))
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    train_loader = DataLoader(Records(256), batch_size=16, num_workers=2, shuffle=True)
    val_loader = DataLoader(Records(64), batch_size=32)
    callbacks = []
    if len(sys.argv) > 1:  # the callback instead of `dlprof run`
        from dlprof.integrations.lightning import DlprofCallback
        callbacks = [DlprofCallback(out=sys.argv[1])]
    trainer = L.Trainer(max_epochs=int(os.environ.get("EPOCHS", "2")), accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
    trainer.fit(Model(), train_loader, val_loader)
    print("fit done")
"""

HUGGING_FACE = DATA + """
    import sys
    import tempfile
    from transformers import Trainer, TrainingArguments

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(8, 2)
        def forward(self, x, labels=None):
            logits = self.layer(x)
            return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}

    args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=16, num_train_epochs=2,
                             dataloader_num_workers=2, report_to=[], save_strategy="no", logging_strategy="no",
                             use_cpu=True, disable_tqdm=True)
    callbacks = []
    if len(sys.argv) > 1:
        from dlprof.integrations.transformers import DlprofCallback
        callbacks = [DlprofCallback(out=sys.argv[1])]
    Trainer(model=Model(), args=args, train_dataset=Records(256), callbacks=callbacks).train()
    print("train done")
"""


def _run(tmp_path, source: str, via_callback: bool, options=(), epochs: int = 2) -> dict:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(source))
    out = tmp_path / "out"
    if via_callback:
        command = [sys.executable, str(script), str(out)]
    else:
        command = DLPROF + ["run", *options, "--out", str(out), "--", sys.executable, str(script)]
    env = {**os.environ, "PYTHONPATH": REPO, "EPOCHS": str(epochs)}
    proc = subprocess.run(command, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "done" in proc.stdout
    with open(out / "results.json", encoding="utf-8") as fh:
        return json.load(fh)


def _check_training_loader(data: dict, batches: int) -> dict:
    sys.path.insert(0, REPO)
    from dlprof.analysis.stages import summarize
    from dlprof.records import ProfileRun

    top = max(data["loaders"], key=lambda x: len(x["run"]["batches"]))
    run = ProfileRun.from_dict(top["run"])
    assert len(run.batches) == batches  # 2 epochs of 16 batches, every one recorded
    assert {b.worker_id for b in run.batches} == {0, 1}  # made in the two workers
    s = summarize(run)
    fetch = s.stages.set_index("stage").loc["fetch", "p50_ms"]
    assert 16 * 5.0 * 0.9 <= fetch <= 16 * 5.0 * 4  # 16 samples of 5 ms a batch, in a worker
    assert s.verdict == "data-bound"  # the step is microseconds: the loop waits on the workers
    return top


def test_lightning_fit_under_dlprof_run(tmp_path):
    data = _run(tmp_path, LIGHTNING, via_callback=False)
    top = _check_training_loader(data, 32)
    line = textwrap.dedent(LIGHTNING).splitlines().index("train_loader = DataLoader(Records(256), batch_size=16, "
                                                         "num_workers=2, shuffle=True)") + 1
    assert top["name"] == "train_loader" and top["site"].endswith(f"train.py:{line}")
    names = {x["name"] for x in data["loaders"]}
    assert "val_loader" in names  # validation (and the sanity check) told apart from training


def test_lightning_fit_under_dlprof_run_autotune(tmp_path):
    """Lightning's training loader (it shuffles) tuned online inside Trainer.fit, every batch
    delivered once; the validation loader only profiled."""
    data = _run(tmp_path, LIGHTNING, via_callback=False, options=("--autotune", "--autotune-budget", "5"), epochs=8)
    loaders = {x["name"]: x for x in data["loaders"]}
    train = loaders["train_loader"]["run"]
    assert train["tuning"] and train["tuning"]["windows"]  # measured windows of the real fit
    # 8 epochs of 16 batches, none lost, none twice: those after the decision counted, not recorded
    assert sum(e["batches"] for e in train["epochs"]) == 8 * 16
    assert len(train["batches"]) < 8 * 16 or train["tuning"]["settled"] is None
    assert loaders["val_loader"]["run"]["tuning"] is None


def test_lightning_callback(tmp_path):
    data = _run(tmp_path, LIGHTNING, via_callback=True)
    _check_training_loader(data, 32)


def test_hugging_face_trainer_under_dlprof_run(tmp_path):
    data = _run(tmp_path, HUGGING_FACE, via_callback=False)
    top = _check_training_loader(data, 32)
    assert top["site"].startswith(str(tmp_path)) or "train.py" in top["site"]  # the user's line: .train()


def test_hugging_face_callback(tmp_path):
    data = _run(tmp_path, HUGGING_FACE, via_callback=True)
    _check_training_loader(data, 32)
