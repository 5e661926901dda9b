"""Refresh docs/serve.png: run the browser test (tests/test_serve_e2e.py) and keep its screenshot.

    python scripts/serve_screenshot.py

The page shows only our generated images (wct.demo's landscape and painting, CC0). Needs
chromium and chromium-driver (apt-get install chromium chromium-driver) and selenium.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = os.environ | {"WCT_E2E_SCREENSHOTS": tmp}
        test = "tests/test_serve_e2e.py"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", test], cwd=ROOT, env=env, check=True)
        shot = Path(tmp) / "serve.png"
        if not shot.exists():
            sys.exit("error: the browser test was skipped or saved no screenshot (is chromium installed?)")
        shutil.copyfile(shot, ROOT / "docs" / "serve.png")
    print(f"wrote {ROOT / 'docs' / 'serve.png'}")


if __name__ == "__main__":
    main()
