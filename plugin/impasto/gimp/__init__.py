"""The GIMP 3 plug-in. The plug-in file itself runs inside GIMP's Python and imports
only the standard library and gi; `impasto gimp install` copies it into GIMP."""

import importlib.util
from pathlib import Path

PLUGIN_NAME = "impasto-neural-style"
PLUGIN_FILE = Path(__file__).resolve().parent / PLUGIN_NAME / f"{PLUGIN_NAME}.py"
CONFIG_NAME = "impasto-bridge.json"
# impasto.events, copied beside the plug-in under this name: GIMP's Python cannot import
# impasto, so the plug-in reads the bridge's event lines with its own copy.
EVENTS_NAME = "impasto_events.py"
# Every module the plug-in and its set-up program use, copied beside the plug-in file
# (by `impasto gimp install` and into the archive) under the name on the left: GIMP's
# Python cannot import impasto. Each is standard library only; those that use another
# import it by this name when they are not inside the impasto package.
COMPANIONS = {
    EVENTS_NAME: "impasto.events",
    "impasto_pipes.py": "impasto.portable.pipes",  # pipes read by threads (Windows)
    "impasto_spawn.py": "impasto.portable.spawn",  # no consoles; detached; pid_alive
    "impasto_pixels.py": "impasto.gimp.pixels",  # HDR scaling, cropping of float RGB
    "impasto_serversetup.py": "impasto.gimp.serversetup",
    "impasto_pythons.py": "impasto.gimp.pythons",  # a Python the set-up can trust; uv
    "impasto_gpus.py": "impasto.gimp.gpus",  # the torch build that fits the card
    "impasto_dialogshot.py": "impasto.gimp.dialogshot",  # dialog size + screenshot (tests)
}


def companion_files() -> dict[str, Path]:
    """The name each companion has beside the plug-in -> its file in this impasto."""
    out = {}
    for name, module in COMPANIONS.items():
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin, module
        out[name] = Path(spec.origin).resolve()
    return out
