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
