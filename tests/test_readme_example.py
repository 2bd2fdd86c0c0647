"""The README's notebook example runs as written, and `import actlab` is the front door."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import actlab

README = Path(__file__).resolve().parents[1] / "README.md"
MARK = "<!-- the notebook example: tests/test_readme_example.py runs this block as it is -->"


def _example() -> str:
    text = README.read_text(encoding="utf-8")
    assert MARK in text
    block = re.search(r"```python\n(.*?)```", text[text.index(MARK):], re.S)
    return block.group(1)


def test_front_door_exposes_the_api():
    for name in ("ModelConfig", "TrainConfig", "GPT", "train", "load_run", "compare", "run_study",
                 "audit", "register", "swap_activation", "sample"):
        assert name in dir(actlab) and callable(getattr(actlab, name)), name
    from actlab.training.loop import train

    assert actlab.train is train
    with pytest.raises(AttributeError):
        actlab.no_such_name  # noqa: B018


def test_import_actlab_is_light():
    code = "import sys, actlab; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_readme_notebook_example_runs(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(_example(), encoding="utf-8")
    env = {"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    import os

    env.update({k: v for k, v in os.environ.items() if k.startswith(("ACTLAB", "OMP", "XDG"))})
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    val = {m.group(1): float(m.group(2)) for m in
           (re.match(r"(\w+): val loss ([\d.]+), trigram baseline ([\d.]+)", line) for line in lines) if m}
    assert set(val) == {"gelu", "sigmoid"}
    ranked = [line.split()[1] for line in lines if re.match(r"[12] (gelu|sigmoid) ", line)]
    assert sorted(ranked) == ["gelu", "sigmoid"]
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert (tmp_path / "results" / "compare" / "ranking.json").is_file()
    assert lines[-1].strip()  # the sample
