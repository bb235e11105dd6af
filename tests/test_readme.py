"""The README's Python API example runs as written (a doctest)."""

import doctest
import re

import pytest

from support import REPO


def python_api_example() -> tuple[str, int]:
    """(the doctest block of the README's "Python API" section, its line number in README.md)."""
    readme = (REPO / "README.md").read_text()
    start = readme.index("## Python API")
    section = readme[start:].split("\n## ", 1)[0]
    (match,) = re.finditer(r"```python\n(.*?)```", section, flags=re.S)
    return match.group(1), readme[: start + match.start()].count("\n") + 1


@pytest.mark.slow
def test_python_api_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    block, line = python_api_example()
    example = doctest.DocTestParser().get_doctest(block, {}, "README Python API", str(REPO / "README.md"), line)
    assert len(example.examples) >= 10
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(example)
    assert runner.summarize(verbose=False).failed == 0
    assert (tmp_path / "api_demo" / "predictions" / "scores.csv").is_file()
