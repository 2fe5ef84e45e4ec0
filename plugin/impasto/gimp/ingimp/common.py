"""What every part of the plug-in shares: its names, its config, its errors, and how it
speaks to the person (GIMP's messages) and to scripts (the trace file)."""

import json
import os

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp  # noqa: E402

PROC = "plug-in-impasto-neural-style"
SETUP_PROC = "plug-in-impasto-setup"
HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "impasto-bridge.json")
TMP_PREFIX = "impasto-gimp-"
# Live preview: its long side and the least time between two updates (redrawing a large
# layer costs GIMP time; about one a second keeps it responsive).
PREVIEW = {"max_side": 384, "interval_s": 1.0}


class PluginError(Exception):
    pass


class Cancelled(Exception):
    """The user cancelled: nothing is left in the image."""


def trace(**event):
    """With IMPASTO_GIMP_TRACE set to a file, one JSON line per preview and result: what
    a script or test can check of a run that happens inside GIMP."""
    path = os.environ.get("IMPASTO_GIMP_TRACE")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(event) + "\n")


def load_config():
    try:
        with open(CONFIG) as f:
            return json.load(f)
    except FileNotFoundError:
        raise PluginError("impasto has no server yet: choose Filters > Artistic > Neural Style: "
                          f"Set Up Server... (procedure {SETUP_PROC}), or run `impasto gimp "
                          f"install` where impasto is installed ({CONFIG} is missing).") from None
    except ValueError as e:
        raise PluginError(f"{CONFIG} is damaged ({e}); run `impasto gimp install` again.") from None


def tell(text):
    """A message for the person (GIMP's message, the error console in batch mode), also
    traced so that scripts and tests can see what was said."""
    Gimp.message(text)
    trace(event="message", text=text)


def choice(pairs):
    c = Gimp.Choice.new()
    for i, (nick, label) in enumerate(pairs):
        c.add(nick, i, label, "")
    return c
