"""The floors of docs/ARCHITECTURE.md are the imports' floors: every grdnet import (at the top of a module or
inside a function) points to the importing module's floor or a lower one, and every module has a floor."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "grdnet"
PACKAGES = ("data", "methods", "models", "synthesis", "training", "reports")
"""Sub-packages that sit on one floor as a whole (written `data/` in the table)."""


def documented_floors() -> dict[str, float]:
    """{'errors': 0, 'data/': 2, …} from the floor table of docs/ARCHITECTURE.md (rows `| floor | modules | … |`)."""
    floors = {}
    for line in (REPO / "docs" / "ARCHITECTURE.md").read_text().splitlines():
        row = re.match(r"\|\s*(\d+(?:\.\d+)?)\s*\|([^|]*)\|", line)
        if row:
            for name in re.findall(r"`([^`]+)`", row.group(2)):
                floors[name] = float(row.group(1))
    return floors


def unit(module: str) -> str:
    """The table's name for a module: 'grdnet.data.index' → 'data/', 'grdnet.cli' → 'cli', 'grdnet' → 'grdnet'."""
    parts = module.split(".")
    if len(parts) == 1:
        return "grdnet"
    return parts[1] + "/" if parts[1] in PACKAGES else parts[1]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(path: Path, known: dict[str, Path]) -> set[str]:
    """The grdnet modules `path` imports (`from grdnet import losses` imports grdnet.losses, not the package)."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names if alias.name.split(".")[0] == "grdnet"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "grdnet":
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & known.keys()
            targets |= submodules or {node.module}
    return targets


def test_every_module_has_a_documented_floor():
    floors = documented_floors()
    assert floors, "no floor table found in docs/ARCHITECTURE.md"
    missing = sorted({unit(module) for module in modules()} - floors.keys())
    assert missing == [], f"modules without a floor in docs/ARCHITECTURE.md: {missing}"
    package_data = {f"{folder.name}/" for folder in PACKAGE.iterdir() if folder.is_dir() and not any(folder.glob("*.py"))}
    stale = sorted(floors.keys() - {unit(module) for module in modules()} - package_data)
    assert stale == [], f"docs/ARCHITECTURE.md lists modules that do not exist: {stale}"


def test_imports_point_to_the_same_floor_or_below():
    floors, known = documented_floors(), modules()
    upward = []
    for module, path in sorted(known.items()):
        for target in sorted(imported(path, known)):
            if floors[unit(target)] > floors[unit(module)]:
                upward.append(f"{module} (floor {floors[unit(module)]:g}) imports {target} "
                              f"(floor {floors[unit(target)]:g})")
    assert upward == []


def test_the_checker_sees_an_upward_import(tmp_path):
    """The scan finds imports inside functions too (a lazy import is still a dependency)."""
    source = tmp_path / "lazy.py"
    source.write_text("def plot():\n    from grdnet.reports.plots import curve_pngs\n    from grdnet import losses\n")
    assert imported(source, modules()) == {"grdnet.reports.plots", "grdnet.losses"}
    assert unit("grdnet.reports.plots") == "reports/" and documented_floors()["reports/"] > documented_floors()["training/"]
