"""The wheel: `python -m build` makes one that carries the review page and installs into a virtual environment
whose `grdnet` command runs. Fast form: built without isolation, installed without dependencies into a
venv that sees this interpreter's packages (torch and the rest)."""

import importlib.util
import os
import shutil
import subprocess
import sys
import venv
import zipfile

import pytest

import grdnet

from support import REPO

needs_build = pytest.mark.skipif(importlib.util.find_spec("build") is None, reason="the 'build' package is not installed")


@needs_build
@pytest.mark.slow
def test_wheel_installs_and_its_command_runs(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    built = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"), str(source)],
                           capture_output=True, text=True, env=env, timeout=300)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("grdnet-*.whl")
    assert wheel.name.startswith(f"grdnet-{grdnet.__version__}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"grdnet/web/index.html", "grdnet/web/app.js", "grdnet/web/style.css", "grdnet/cli.py"} <= names

    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=True)
    python, command = env_dir / "bin" / "python", env_dir / "bin" / "grdnet"
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--force-reinstall", str(wheel)],
                               capture_output=True, text=True, env=env, timeout=300)
    assert installed.returncode == 0, installed.stderr[-2000:]
    where = subprocess.run([str(python), "-c", "import grdnet, grdnet.review as r; print(grdnet.__file__); print(r.WEB_DIR)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout.split()
    assert all(path.startswith(str(env_dir)) for path in where), where
    assert (env_dir / where[1].removeprefix(str(env_dir) + "/") / "index.html").is_file()
    helped = subprocess.run([str(command), "--help"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert helped.returncode == 0 and "serve" in helped.stdout and "train" in helped.stdout
    version = subprocess.run([str(command), "--version"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert version.returncode == 0 and grdnet.__version__ in version.stdout
