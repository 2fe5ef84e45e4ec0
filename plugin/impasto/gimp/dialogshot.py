"""A GIMP plug-in dialog's size and a screenshot of it, for tests/gimp/screens.py: with
IMPASTO_DIALOG_SHOT naming a folder, `capture(dialog, name)` shows the dialog, lets GTK
lay it out, writes FOLDER/NAME.png (the window's pixels as the X server has them) and
FOLDER/NAME.json (its size, the screen's, and whether anything in it needs scrolling;
then the same with every Gtk.Expander opened, FOLDER/NAME-expanded.png), and returns True: the caller treats the dialog as cancelled. Without the variable it
does nothing and returns False. The plug-in calls it just before `dialog.run()`:

    if dialogshot is not None and dialogshot.capture(dialog, "neural-style"):
        return CANCEL

The plug-in imports its copy beside it, `impasto_dialogshot.py`. Importing it needs the
standard library only (the archive's stand-alone checks import every companion on a
bare Python); GTK is reached only inside `capture`, through the gi modules the calling
plug-in has loaded already (it made the dialog with them).
"""

from __future__ import annotations

import importlib
import json
import os
import time

ENV = "IMPASTO_DIALOG_SHOT"
# How long the dialog's size must stay the same before it counts as laid out (seconds; a
# dialog that fills itself from a thread's answer, as the set-up's note does, may grow
# once more), and the most time spent waiting for it to map and settle.
SETTLE_ENV = "IMPASTO_DIALOG_SHOT_SETTLE"
SETTLE_S = 1.5
LIMIT_S = 30.0


def capture(dialog, name: str) -> bool:
    """With IMPASTO_DIALOG_SHOT set: the dialog shown, measured and saved; True (treat it
    as cancelled). Without: nothing, False. Never raises: a failure is written into
    NAME.json as "error", so that the caller still gets True and the test sees why."""
    folder = os.environ.get(ENV)
    if not folder:
        return False
    info: dict = {"name": name}
    try:
        info.update(_shoot(dialog, name, folder))
    except Exception as e:  # noqa: BLE001 - reported in the json, the dialog still closes
        info["error"] = f"{type(e).__name__}: {e}"
    path = os.path.join(folder, f"{name}.json")
    with open(path + ".part", "w") as f:
        json.dump(info, f, indent=2)
    os.replace(path + ".part", path)  # a reader never sees half a file
    return True


def _gi(namespace: str, version: str):
    gi = importlib.import_module("gi")
    gi.require_version(namespace, version)
    return importlib.import_module(f"gi.repository.{namespace}")


def _pump(Gtk) -> None:
    while Gtk.events_pending():
        Gtk.main_iteration_do(False)


def _widgets(widget):
    """The widget and every widget inside it, internal children included (forall)."""
    yield widget
    if hasattr(widget, "forall"):
        children: list = []
        widget.forall(children.append)
        for child in children:
            yield from _widgets(child)


def _scrolling(Gtk, dialog) -> list[dict]:
    """Each visible scrolled window in the dialog: its size, its content's, and whether
    the content is larger (a person has to scroll to see it all)."""
    out = []
    for w in _widgets(dialog):
        if not isinstance(w, Gtk.ScrolledWindow) or not w.is_visible():
            continue
        entry: dict = {"allocation": [w.get_allocated_width(), w.get_allocated_height()]}
        needs = False
        for axis, adj in (("horizontal", w.get_hadjustment()), ("vertical", w.get_vadjustment())):
            content = adj.get_upper() - adj.get_lower()
            page = adj.get_page_size()
            entry[axis] = {"content": content, "page": page}
            needs = needs or content > page + 0.5
        entry["needs_scrolling"] = needs
        out.append(entry)
    return out


def _settle(Gtk, dialog, settle: float, deadline: float) -> bool:
    """GTK's loop run until the dialog is mapped and its size has stayed the same for
    `settle` seconds; False if that did not happen before `deadline`."""
    while not (dialog.get_mapped() and dialog.get_window() is not None
               and dialog.get_window().is_viewable()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the dialog was not mapped within {LIMIT_S:g} s")
        _pump(Gtk)
        time.sleep(0.01)
    last, since = None, time.monotonic()
    while True:
        _pump(Gtk)
        win = dialog.get_window()
        size = (win.get_width(), win.get_height(),
                dialog.get_allocated_width(), dialog.get_allocated_height())
        now = time.monotonic()
        if size != last:
            last, since = size, now
        elif now - since >= settle:
            return True
        if now > deadline:
            return False
        time.sleep(0.02)


def _measure(Gtk, Gdk, dialog, png: str) -> dict:
    """The dialog's size as laid out now, the screen's, its scrolling, and its pixels in
    `png`: the part of the window that is on the screen (the X server keeps no pixels for
    the rest: a dialog taller than the screen is shown cut, as a person sees it)."""
    display = dialog.get_display()
    display.sync()
    _pump(Gtk)
    win = dialog.get_window()
    width, height = win.get_width(), win.get_height()
    _, x, y = win.get_origin()
    monitor = display.get_monitor_at_window(win).get_geometry()
    screen_w, screen_h = monitor.width, monitor.height
    min_w, nat_w = dialog.get_preferred_width()
    min_h, nat_h = dialog.get_preferred_height()
    scrolled = _scrolling(Gtk, dialog)
    vx, vy = max(x, 0), max(y, 0)
    vw = min(x + width, screen_w) - vx
    vh = min(y + height, screen_h) - vy
    if vw > 0 and vh > 0:
        pixbuf = Gdk.pixbuf_get_from_window(win, vx - x, vy - y, vw, vh)
        if pixbuf is None:
            raise RuntimeError("no pixels came back from the dialog's window")
        pixbuf.savev(png, "png", [], [])
    return {
        "width": width, "height": height, "x": x, "y": y,
        "screen_width": screen_w, "screen_height": screen_h,
        "min_width": min_w, "natural_width": nat_w,
        "min_height": min_h, "natural_height": nat_h,
        "shown": [max(vw, 0), max(vh, 0)],  # the part of the dialog on the screen: the PNG
        "scrolled_windows": scrolled,
        # A person must scroll: a scrolled window's content is larger than it, or the
        # dialog's least size is larger than the screen.
        "needs_scrolling": any(sc["needs_scrolling"] for sc in scrolled)
        or min_h > screen_h or min_w > screen_w,
        "png": os.path.basename(png) if vw > 0 and vh > 0 else None,
    }


def _shoot(dialog, name: str, folder: str) -> dict:
    Gtk = _gi("Gtk", "3.0")
    Gdk = _gi("Gdk", "3.0")
    settle = float(os.environ.get(SETTLE_ENV) or SETTLE_S)
    t0 = time.monotonic()
    dialog.present()  # as GimpDialog's run() does: shown, not show_all (hidden stays hidden)
    stable = _settle(Gtk, dialog, settle, t0 + LIMIT_S)
    info = {"title": dialog.get_title(), "settle_s": settle, "stable": stable,
            **_measure(Gtk, Gdk, dialog, os.path.join(folder, f"{name}.png"))}
    # The largest the dialog gets as a person opens it up: every expander open (those an
    # opened one reveals too), measured again as NAME-expanded.png; null without expanders.
    opened = 0
    for _ in range(5):
        closed = [w for w in _widgets(dialog) if isinstance(w, Gtk.Expander)
                  and w.is_visible() and not w.get_expanded()]
        for w in closed:
            w.set_expanded(True)
        opened += len(closed)
        if not closed:
            break
        _pump(Gtk)
    info["expanders"] = opened
    info["expanded"] = None
    if opened:
        stable = _settle(Gtk, dialog, settle, time.monotonic() + LIMIT_S)
        info["expanded"] = {"stable": stable, **_measure(
            Gtk, Gdk, dialog, os.path.join(folder, f"{name}-expanded.png"))}
    info["seconds"] = round(time.monotonic() - t0, 3)
    return info
