"""The GIMP 3 plug-in. The plug-in file itself runs inside GIMP's Python and imports
only the standard library and gi; `impasto gimp install` copies it into GIMP."""

from pathlib import Path

PLUGIN_NAME = "impasto-neural-style"
PLUGIN_FILE = Path(__file__).resolve().parent / PLUGIN_NAME / f"{PLUGIN_NAME}.py"
CONFIG_NAME = "impasto-bridge.json"
# impasto.events, copied beside the plug-in under this name: GIMP's Python cannot import
# impasto, so the plug-in reads the bridge's event lines with its own copy.
EVENTS_NAME = "impasto_events.py"
