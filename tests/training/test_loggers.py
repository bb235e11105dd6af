import importlib.util
import json

import pytest

from grdnet.errors import ConfigError
from grdnet.training import Trainer
from grdnet.training.loggers import open_logger, scalar_tags


def test_scalar_tags_group_losses_rates_validation_and_speed():
    record = {"epoch": 3, "loss_con": 0.5, "lr_generator": 1e-3, "seconds": 2.0, "images_per_s": 40.0,
              "val_image_AUROC": 0.9, "threshold": 0.2, "note": "text"}
    assert scalar_tags(record) == {"loss/con": 0.5, "lr/generator": 1e-3, "speed/epoch_seconds": 2.0,
                                   "speed/images_per_s": 40.0, "validation/image_AUROC": 0.9, "validation/threshold": 0.2}


def test_tensorboard_event_file_has_every_scalar_and_heatmap_strips(make_config):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_config(epochs=2, logger="tensorboard", log_images_every=1)
    run = Trainer(cfg, show_progress=False).fit().run_dir
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    for key, tag in (("loss_con", "loss/con"), ("loss_seg", "loss/seg"), ("val_image_AUROC", "validation/image_AUROC"),
                     ("images_per_s", "speed/images_per_s"), ("threshold", "validation/threshold")):
        assert [(e.step, pytest.approx(e.value)) for e in events.Scalars(tag)] == [(r["epoch"], r[key]) for r in log]
    assert any(tag.startswith("lr/") for tag in tags["scalars"])
    strips = events.Images("validation/heatmaps")
    assert [s.step for s in strips] == [1, 2] and strips[0].height == 2 * 64 and strips[0].width == 4 * 64


def test_none_writes_no_logs_and_a_missing_tool_is_one_line(make_config):
    cfg = make_config(epochs=1, logger="none")
    assert open_logger(cfg, cfg.train.output_dir) is None
    if importlib.util.find_spec("mlflow") is None:
        with pytest.raises(ConfigError, match="mlflow is not installed; install it with: pip install mlflow-skinny"):
            open_logger(cfg.updated({"train.logger": "mlflow"}), cfg.train.output_dir)
    run = Trainer(cfg, show_progress=False).fit().run_dir
    assert not (run / "tensorboard").exists()


def test_mlflow_run_in_local_mlruns_has_the_metrics(make_config, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = make_config(epochs=1, logger="mlflow", log_images_every=1)
    run = Trainer(cfg, show_progress=False).fit().run_dir
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    client = mlflow.tracking.MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    (found,) = client.search_runs([client.get_experiment_by_name("grdnet").experiment_id])
    assert found.data.metrics["loss.con"] == pytest.approx(log[-1]["loss_con"])
    assert found.data.params["model.name"] == "grdnet"
    assert [a.path for a in client.list_artifacts(found.info.run_id)] == ["validation_heatmaps"]
