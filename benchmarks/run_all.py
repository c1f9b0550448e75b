"""Run every benchmark in this folder, one after another, each in its own process.

Each benchmark runs our code and the alternative side by side in one process and prints ratios;
absolute times on shared machines are noisy, the ratios are what we hold ourselves to.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
failed = []
for script in sorted(here.glob("*.py")):
    if script.name == Path(__file__).name:
        continue
    print(f"\n=== {script.name} ===", flush=True)
    if subprocess.run([sys.executable, str(script)]).returncode != 0:
        failed.append(script.name)
if failed:
    print(f"\nfailed: {', '.join(failed)}")
    sys.exit(1)
