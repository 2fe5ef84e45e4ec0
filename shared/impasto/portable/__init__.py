"""What differs between Linux, macOS and Windows, one small module per mechanism:

    locks.py        one process at a time (a keyring being made, a watched folder)
    privacy.py      files only their user may read (secret keys, the style library)
    openwriters.py  files another process holds open for writing (the watch folder)
    process.py      signals that stop a process, and starting one detached from its parent

Each has the Linux implementation (which macOS shares where POSIX gives the same
guarantee), one written to Windows' documented APIs, and a portable fallback. Setting
IMPASTO_PORTABLE_FALLBACKS=1 makes every module take the path another system takes
where Linux has a better one, so the suite's second pass exercises those paths here
(docs/portability.md lists what each keeps and what it cannot).
"""

from __future__ import annotations

import os
import platform
import sys

FORCE_ENV = "IMPASTO_PORTABLE_FALLBACKS"


def fallbacks_forced() -> bool:
    return os.environ.get(FORCE_ENV) == "1"


def system() -> str:
    """Linux, Darwin or Windows (platform.system()'s names), read from sys.platform like
    every per-system choice in impasto, so the Windows-library mode of the tests
    (tests/winlib: IMPASTO_WINDOWS_LIBRARY=1) steers it too."""
    if sys.platform == "win32":
        return "Windows"
    if sys.platform == "darwin":
        return "Darwin"
    return platform.system()
