"""The README's main command, `make demo` (`python -m demo`), end to end."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_the_demo_trains_serves_and_prints_every_event(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "demo", "--work-dir", str(tmp_path), "--events", "6"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "7 of 7 events answered" in out
    assert out.count(" v1 ") == 6
    assert "dead letter: movie_not_found" in out
    assert "worker exited with code 0" in out
    overlap = float(re.search(r"mean overlap \(Jaccard\) ([0-9.]+)", out).group(1))
    assert overlap >= 0.5, "the demo model should have learnt the synthetic genres"
    assert (tmp_path / "models" / "1" / "saved_model.pb").is_file()
