"""anomalib's half of benchmarks/side_by_side.py: one model trained, tested and run on a folder, timed.

Runs inside anomalib's own virtual environment (benchmarks/setup_anomalib.sh), never imports grdnet, and
prints one line `RESULT {json}`:
- `train_images_per_s`: training images / seconds of the training steps of each epoch after the first (the
  clock runs from the epoch's start to its last batch, so validation is left out, as on our side);
- `test_images_per_s`: test images / seconds of `Engine.test` (anomalib's defaults: its metrics and its
  image visualiser writing result images);
- `predict_images_per_s`: images / seconds of `Engine.predict` on a folder;
- `gflops_forward_per_image`: FLOPs of the network's inference forward on one image (PyTorch's flop counter).

    python anomalib_side.py '{"root": ..., "category": ..., "model": "draem", "size": 128, "epochs": 2,
                              "batch_size": 8, "threads": 2, "dtd": ..., "predict_dir": ..., "work": ...}'
"""

import json
import sys
import time

import torch
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from anomalib.models import Draem, Ganomaly
from lightning.pytorch.callbacks import Callback
from torch.utils.flop_counter import FlopCounterMode


class TrainClock(Callback):
    """Seconds from each training epoch's start to its last training batch's end."""

    def __init__(self) -> None:
        self.epoch_seconds: list[float] = []
        self.batches: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start, self.end, self.count = time.perf_counter(), None, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end, self.count = time.perf_counter(), self.count + 1

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epoch_seconds.append(self.end - self.start)
        self.batches.append(self.count)


def main(spec: dict) -> dict:
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    size = (spec["size"], spec["size"])
    batch = spec["batch_size"]
    datamodule = MVTecAD(root=spec["root"], category=spec["category"], train_batch_size=batch,
                         eval_batch_size=batch, num_workers=0)
    if spec["model"] == "draem":
        model = Draem(dtd_dir=spec["dtd"], pre_processor=Draem.configure_pre_processor(image_size=size))
    else:
        model = Ganomaly(pre_processor=Ganomaly.configure_pre_processor(image_size=size))
    clock = TrainClock()
    engine = Engine(max_epochs=spec["epochs"], callbacks=[clock], logger=False, default_root_dir=spec["work"],
                    accelerator="cpu", devices=1, enable_progress_bar=False)
    start = time.perf_counter()
    engine.fit(model=model, datamodule=datamodule)
    fit_seconds = time.perf_counter() - start
    steady = list(zip(clock.epoch_seconds, clock.batches))[1:] or list(zip(clock.epoch_seconds, clock.batches))
    train_rate = sum(n * batch for _, n in steady) / sum(s for s, _ in steady)

    start = time.perf_counter()
    metrics = engine.test(model=model, datamodule=datamodule)[0]
    test_seconds = time.perf_counter() - start
    n_test = len(datamodule.test_data)

    start = time.perf_counter()
    predictions = engine.predict(model=model, data_path=spec["predict_dir"], return_predictions=True)
    predict_seconds = time.perf_counter() - start
    n_predicted = sum(len(p.pred_score) for p in predictions)
    network = model.model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        network(torch.rand(1, 3, *size))
    return {
        "framework": "anomalib", "model": spec["model"], "size": spec["size"],
        "gflops_forward_per_image": round(counter.get_total_flops() / 1e9, 3),
        "params_M": round(sum(p.numel() for p in model.model.parameters()) / 1e6, 2),
        "n_train": len(datamodule.train_data), "epoch_seconds": [round(s, 2) for s in clock.epoch_seconds],
        "train_images_per_s": round(train_rate, 3), "fit_seconds": round(fit_seconds, 1),
        "n_test": n_test, "test_seconds": round(test_seconds, 2), "test_images_per_s": round(n_test / test_seconds, 3),
        "n_predicted": n_predicted, "predict_seconds": round(predict_seconds, 2),
        "predict_images_per_s": round(n_predicted / predict_seconds, 3),
        "metrics": {k: round(float(v), 4) for k, v in metrics.items()},
        "versions": {"torch": torch.__version__, "anomalib": __import__("anomalib").__version__},
    }


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(json.loads(sys.argv[1]))), flush=True)
