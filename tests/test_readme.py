"""The README's library example runs as written and prints an MFU."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def library_example() -> str:
    """The python block that follows the README's <!-- library-example --> marker."""
    m = re.search(r"<!-- library-example -->\s*```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert m, "README.md has no <!-- library-example --> python block"
    return m.group(1)


def test_readme_library_example_runs_and_prints_mfu(tmp_path):
    code = library_example()
    assert len(code.strip().splitlines()) <= 12  # the README promises a short example
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if "MFU" in line]
    assert len(lines) == 2, out.stdout  # one line per case
    for line in lines:
        mfu = float(re.search(r"MFU (\d+(?:\.\d+)?)%", line).group(1))
        assert 0 < mfu <= 100, line  # measured against this machine's calibrated peak, so a fraction of it
    assert (tmp_path / "runs" / "example" / "results.jsonl").is_file()
