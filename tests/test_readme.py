"""The README's promises that a test can keep: its Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks(section: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_the_from_python_example_runs(tmp_path, monkeypatch, capsys):
    (block,) = _python_blocks("From Python")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md (From Python)", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"\d+ voxels FWE-significant", printed[0])
    accuracy = eval(printed[1], {})  # the metric's dict: value and its interval
    assert 0 <= accuracy["ci_low"] <= accuracy["value"] <= accuracy["ci_high"] <= 1
    assert (tmp_path / "sim" / "participants.tsv").is_file()
