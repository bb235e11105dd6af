"""Two processes under torchrun with the gloo backend: DDP keeps the weights identical across ranks."""

import json
import socket
import subprocess
import sys
import textwrap

import torch

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from grdnet.config import RunConfig
    from grdnet.training import Trainer

    cfg = RunConfig.from_dict(json.loads(open(sys.argv[1]).read()))
    trainer = Trainer(cfg, show_progress=False)
    trainer.fit()
    torch.save(trainer.model.state_dict(), os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.pt"))
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_keeps_weights_identical(make_config, tmp_path):
    cfg = make_config("ddp", epochs=1)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    (tmp_path / "train.py").write_text(SCRIPT)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
        "--master-port", str(free_port()), str(tmp_path / "train.py"), str(tmp_path / "cfg.json"), str(tmp_path),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    # The ranks trained on different shards, yet agree: the weights moved away from initialisation.
    from grdnet.models import build_model

    torch.manual_seed(cfg.train.seed)
    fresh = build_model(cfg).state_dict()
    initial_differs = any(not torch.equal(fresh[k], rank0[k]) for k in rank0 if rank0[k].is_floating_point())
    assert initial_differs
    assert (cfg.train.output_dir / "last.pt").is_file()


NAN_ON_RANK_ONE = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from grdnet.config import RunConfig
    from grdnet.errors import TrainingError
    from grdnet.training import Trainer
    from grdnet.training.recipes.grdnet import GRDNetRecipe

    original, steps = GRDNetRecipe.training_step, []

    def poisoned(self, batch, generator):
        losses = original(self, batch, generator)
        steps.append(1)
        if os.environ["RANK"] == "1" and len(steps) == 2:
            losses["con"] = torch.tensor(float("nan"))
        return losses

    GRDNetRecipe.training_step = poisoned
    cfg = RunConfig.from_dict(json.loads(open(sys.argv[1]).read()))
    try:
        Trainer(cfg, show_progress=False).fit()
        message = "no error"
    except TrainingError as error:
        message = str(error)
    with open(os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.txt"), "w") as out:
        out.write(f"{len(steps)} {message}")
    # What is tested is written. Skip interpreter teardown: under load, gloo's worker threads of a group that
    # stopped on an error now and then abort the process there ("terminate called without an active exception").
    os._exit(0)
    """
)


def test_a_nan_on_one_rank_stops_every_rank_at_the_same_step(make_config, tmp_path):
    cfg = make_config("ddp_nan", epochs=1, batch_size=2)  # 10 steps per rank
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    (tmp_path / "train.py").write_text(NAN_ON_RANK_ONE)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
        "--master-port", str(free_port()), str(tmp_path / "train.py"), str(tmp_path / "cfg.json"), str(tmp_path),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = ((tmp_path / f"rank{r}.txt").read_text() for r in (0, 1))
    assert rank0 == rank1 and rank0.startswith("6 ") and "became nan at epoch 1, step 6;" in rank0
