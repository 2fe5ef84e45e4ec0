"""The GIMP 3 plug-in. The plug-in file itself runs inside GIMP's Python and imports
only the standard library and gi; `impasto gimp install` copies it into GIMP."""

import importlib
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
    "impasto_request.py": "impasto.bridgerequest",  # the typed request the bridge reads
    "impasto_pipes.py": "impasto.portable.pipes",  # pipes read by threads (Windows)
    "impasto_spawn.py": "impasto.portable.spawn",  # no consoles; detached; pid_alive
    "impasto_pixels.py": "impasto.gimp.pixels",  # HDR scaling, cropping of float RGB
    "impasto_serversetup.py": "impasto.gimp.serversetup",
    "impasto_pythons.py": "impasto.gimp.pythons",  # a Python the set-up can trust; uv
    "impasto_gpus.py": "impasto.gimp.gpus",  # the torch build that fits the card
    "impasto_dialogshot.py": "impasto.gimp.dialogshot",  # dialog size + screenshot (tests)
}


# The plug-in's own parts (impasto.gimp.ingimp), beside the plug-in file under these
# names: standard library and gi, run inside GIMP only.
PARTS = {
    "impasto_common.py": "impasto.gimp.ingimp.common",  # names, config, errors, messages
    "impasto_dialog.py": "impasto.gimp.ingimp.dialog",  # the Neural Style dialog
    "impasto_stylerows.py": "impasto.gimp.ingimp.stylerows",  # style rows and their areas
    "impasto_still.py": "impasto.gimp.ingimp.still",  # one layer
    "impasto_animation.py": "impasto.gimp.ingimp.animation",  # the layers as one clip
    "impasto_layerio.py": "impasto.gimp.ingimp.layerio",  # pixels in and out of GIMP
    "impasto_bridgecall.py": "impasto.gimp.ingimp.bridgecall",  # the bridge and its events
    "impasto_setupdialog.py": "impasto.gimp.ingimp.setupdialog",  # Set Up Server
}
# Written beside the plug-in from impasto's own metadata rather than copied: the name
# there -> the module whose render() makes its text (standard library only, like the rest).
GENERATED = {
    "impasto_fields.py": "impasto.gimp.dialogfields",  # the dialog's option fields
}


def companion_texts() -> dict[str, bytes]:
    """Every file that goes beside the plug-in file, copied or generated: name -> bytes."""
    out = {name: path.read_bytes() for name, path in companion_files().items()}
    out |= {name: path.read_bytes() for name, path in part_files().items()}
    for name, module in GENERATED.items():
        out[name] = importlib.import_module(module).render().encode()
    return out


def part_files() -> dict[str, Path]:
    """The name each part of the plug-in has beside it -> its file in this impasto."""
    return _files(PARTS)


def beside_names() -> set[str]:
    """Every module name the plug-in folder holds (what its files may import)."""
    return {n.removesuffix(".py") for n in (*COMPANIONS, *PARTS, *GENERATED)}


def companion_files() -> dict[str, Path]:
    """The name each companion has beside the plug-in -> its file in this impasto."""
    return _files(COMPANIONS)


def _files(modules: dict[str, str]) -> dict[str, Path]:
    out = {}
    for name, module in modules.items():
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin, module
        out[name] = Path(spec.origin).resolve()
    return out
