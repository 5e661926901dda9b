"""Refresh docs/serve.png: run the browser test (tests/test_serve_e2e.py) and keep its screenshot.

    python scripts/serve_screenshot.py [--overwrite]

The page shows only our generated images (wct.demo's landscape and painting, CC0). Needs
chromium and chromium-driver (apt-get install chromium chromium-driver) and selenium.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "serve.png"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--overwrite", action="store_true", help=f"Replace {TARGET}.")
    args = ap.parse_args()
    if TARGET.exists() and not args.overwrite:  # before the browser test
        ap.error(f"{TARGET} exists: pass --overwrite to replace it")
    with tempfile.TemporaryDirectory() as tmp:
        env = os.environ | {"WCT_E2E_SCREENSHOTS": tmp}
        test = "tests/test_serve_e2e.py"
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", test], cwd=ROOT, env=env)
        if run.returncode:
            sys.exit(f"error: the browser test failed (exit {run.returncode}): {TARGET} left as it was")
        shot = Path(tmp) / "serve.png"
        if not shot.exists():
            sys.exit("error: the browser test was skipped or saved no screenshot (is chromium installed?)")
        shutil.copyfile(shot, TARGET)
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
