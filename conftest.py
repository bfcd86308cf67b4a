"""Repository root conftest: deliberately thin.

The kfm-ops plugin loads through its ``pytest11`` entry point (kfm_ops.plugin),
exactly as it does for an installed kfm-ops. The only repo-local convenience: in a
checkout, settings default to the local stack's (.env.example) unless KFM_ENV_FILE
or a .env file says otherwise.
"""

import os
from pathlib import Path

_root = Path(__file__).resolve().parent
if "KFM_ENV_FILE" not in os.environ and not (_root / ".env").is_file():
    os.environ["KFM_ENV_FILE"] = str(_root / ".env.example")
