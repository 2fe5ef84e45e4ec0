"""A GIMP plug-in dialog's size and a screenshot of it, for tests/gimp/screens.py: with
IMPASTO_DIALOG_SHOT naming a folder, `capture(dialog, name)` shows the dialog, lets GTK
lay it out, writes FOLDER/NAME.png (the window's pixels as the X server has them) and
FOLDER/NAME.json (its size, the screen's, and whether anything in it needs scrolling;
then the same with every Gtk.Expander opened, FOLDER/NAME-expanded.png), and returns True: the caller treats the dialog as cancelled. Without the variable it
does nothing and returns False. The plug-in calls it just before `dialog.run()`:

    if dialogshot is not None and dialogshot.capture(dialog, "neural-style"):
        return CANCEL

With IMPASTO_DIALOG_SHOT_STATE set (or actions named), NAME.json also says what the dialog
shows ("state", as it first appears): each expander's label and whether it is open, each
notebook's tab labels, each list's chosen text and entries, each entry's text, each file
chooser's file, each labelled button's sensitivity, and the procedure config's values
(without either, NAME.json is as before). With IMPASTO_DIALOG_SHOT_ACTIONS naming actions
(comma-separated, done in that order on the live dialog after the measurements), "actions"
holds each one's outcome and the state after it, and "state_before" / "state_after" the
state before the first and after the last:

    clear-picture   click the first style's "Clear" (only when it is sensitive)
    initial-reset   Reset > Reset to Initial Values, through the dialog's own Reset button
    factory-reset   Reset > Reset to Factory Defaults, likewise

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
STATE_ENV = "IMPASTO_DIALOG_SHOT_STATE"
ACTIONS_ENV = "IMPASTO_DIALOG_SHOT_ACTIONS"
# GimpProcedureDialog's Reset button answers with this response; its popover's buttons.
RESPONSE_RESET = 1
RESETS = {"initial-reset": "Reset to Initial Values",
          "factory-reset": "Reset to Factory Defaults"}
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


def _widgets(widget, seen: dict | None = None):
    """The widget and every widget inside it, internal children included (forall; a
    window's popovers too), each once (a combo box with an entry reaches it twice)."""
    seen = {} if seen is None else seen
    if id(widget) in seen:
        return
    seen[id(widget)] = widget  # kept: a live wrapper's id is not reused, nor is it remade
    yield widget
    if hasattr(widget, "forall"):
        children: list = []
        widget.forall(children.append)
        for child in children:
            yield from _widgets(child, seen)


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
    actions = [a.strip() for a in (os.environ.get(ACTIONS_ENV) or "").split(",") if a.strip()]
    if actions or os.environ.get(STATE_ENV):
        info["state"] = state(dialog)  # as it first appears: before the expanders are opened
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
    if actions:
        info["state_before"] = state(dialog)
        info["actions"] = []
        for action in actions:
            outcome: dict = {"action": action}
            try:
                outcome.update(_act(Gtk, dialog, action))
            except Exception as e:  # noqa: BLE001 - reported; the next action still runs
                outcome["error"] = f"{type(e).__name__}: {e}"
            _idle(Gtk)
            outcome["state"] = state(dialog)
            info["actions"].append(outcome)
        info["state_after"] = info["actions"][-1]["state"]
    info["seconds"] = round(time.monotonic() - t0, 3)
    return info


# What the dialog shows --------------------------------------------------------------


def _idle(Gtk, seconds: float = 0.2) -> None:
    """GTK's loop run for a moment: what a change queued (an idle callback that marks a
    tab, a file chooser's answer) is done before the state is read."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        _pump(Gtk)
        time.sleep(0.01)
    _pump(Gtk)


def _text(Gtk, widget) -> str | None:
    """The text a widget shows: a label's, or the first label's inside it."""
    for w in _widgets(widget):
        if isinstance(w, Gtk.Label):
            return w.get_text()
    return None


def _place(Gtk, widget) -> str:
    """Where a widget is, as a person would say it: the frames, expanders and notebook
    tabs around it and the label beside it in its grid, outermost first ("More styles and
    areas / Style 2 / Or a layer")."""
    parts = []
    child, parent = widget, widget.get_parent()
    while parent is not None:
        if isinstance(parent, Gtk.Notebook):
            tab = parent.get_tab_label(child)
            if tab is not None:
                parts.append(_text(Gtk, tab) or "")
        elif isinstance(parent, Gtk.Expander) and child is parent.get_child():
            parts.append(parent.get_label() or "")
        elif (isinstance(parent, Gtk.Frame) and child is parent.get_child()
              and parent.get_label()):
            parts.append(parent.get_label())
        elif isinstance(parent, Gtk.Grid):
            left = parent.child_get_property(child, "left-attach")
            top = parent.child_get_property(child, "top-attach")
            beside = parent.get_child_at(0, top) if left > 0 else None
            if isinstance(beside, Gtk.Label):
                parts.append(beside.get_text())
        child, parent = parent, parent.get_parent()
    return " / ".join(reversed(parts))


def _value(value):
    """A config value as JSON: a file as its path, a layer or channel as its name."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_value(v) for v in value]
    if hasattr(value, "get_path") and hasattr(value, "get_uri"):  # a Gio.File
        return {"file": value.get_path()}
    if hasattr(value, "get_name") and hasattr(value, "get_id"):  # a Gimp.Item
        return {"item": value.get_name(), "id": value.get_id()}
    if hasattr(value, "get_id"):  # a Gimp.Image
        return {"id": value.get_id()}
    if hasattr(value, "value_nick"):  # an enum
        return value.value_nick
    return repr(value)


def _config(dialog) -> dict:
    """The values of the config the dialog edits (GimpProcedureDialog's "config")."""
    try:
        config = dialog.get_property("config")
    except TypeError:
        return {}
    out = {}
    for pspec in config.list_properties():
        if pspec.name == "procedure":
            continue
        try:
            out[pspec.name] = _value(config.get_property(pspec.name))
        except Exception as e:  # noqa: BLE001 - one unreadable value does not hide the rest
            out[pspec.name] = f"<{type(e).__name__}: {e}>"
    return out


def state(dialog) -> dict:
    """What the dialog shows now: its expanders, notebook tabs, lists (Gtk.ComboBoxText),
    entries, file choosers and labelled buttons, each with its place (see _place), and the
    config's values."""
    Gtk = _gi("Gtk", "3.0")
    out: dict = {"expanders": [], "notebooks": [], "combos": [], "entries": [],
                 "pictures": [], "buttons": []}
    for w in _widgets(dialog):
        common = {"place": _place(Gtk, w), "visible": w.is_visible(),
                  "sensitive": w.is_sensitive()}
        if isinstance(w, Gtk.Expander):
            out["expanders"].append({"label": w.get_label(), "expanded": w.get_expanded(),
                                     **common})
        elif isinstance(w, Gtk.Notebook):
            pages = [w.get_nth_page(i) for i in range(w.get_n_pages())]
            out["notebooks"].append({"tabs": [_text(Gtk, w.get_tab_label(p)) for p in pages],
                                     "current": w.get_current_page(), **common})
        elif isinstance(w, Gtk.ComboBoxText):
            model = w.get_model()
            out["combos"].append({"active": w.get_active_text(),
                                  "entries": [row[0] for row in model], **common})
        elif isinstance(w, Gtk.FileChooserButton):
            f = w.get_file()
            out["pictures"].append({"file": f.get_path() if f is not None else None,
                                    "shows": _text(Gtk, w), "title": w.get_title(), **common})
        elif isinstance(w, Gtk.Entry) and not isinstance(w, Gtk.SpinButton):
            out["entries"].append({"text": w.get_text(), **common})
        elif isinstance(w, Gtk.Button) and w.get_label():
            out["buttons"].append({"label": w.get_label(), **common})
    out["config"] = _config(dialog)
    return out


# What a person does in it -----------------------------------------------------------


def _act(Gtk, dialog, action: str) -> dict:
    if action == "clear-picture":
        return _clear_picture(Gtk, dialog)
    if action in RESETS:
        return _reset(Gtk, dialog, RESETS[action])
    raise ValueError(f"no such action {action!r} (known: clear-picture, {', '.join(RESETS)})")


def _clear_picture(Gtk, dialog) -> dict:
    """A click on the first style's Clear button, as a person can make it: only when the
    button is sensitive (a click on an insensitive button does nothing)."""
    found = [w for w in _widgets(dialog)
             if isinstance(w, Gtk.Button) and w.get_label() == "Clear"]
    if not found:
        raise RuntimeError("no Clear button in the dialog")
    button = found[0]
    if not button.is_sensitive():
        return {"done": False, "why": "the Clear button is not sensitive",
                "place": _place(Gtk, button)}
    button.clicked()
    return {"done": True, "place": _place(Gtk, button)}


def _reset(Gtk, dialog, words: str) -> dict:
    """GIMP's Reset > `words`, as a person chooses it: the dialog runs (as the plug-in
    would run it), its Reset button is clicked, which pops up GIMP's menu of resets; the
    button named `words` in it is clicked; then the dialog is answered Cancel, which ends
    the run. Found by what the buttons say, as GIMP labels them (in English: the tests
    run GIMP with LANG=C.UTF-8)."""
    GLib = _gi("GLib", "2.0")
    reset = dialog.get_widget_for_response(RESPONSE_RESET)
    if reset is None:
        raise RuntimeError("the dialog has no Reset button (a GimpProcedureDialog has one)")
    outcome: dict = {"done": False}
    deadline = time.monotonic() + 10.0

    def end() -> bool:
        dialog.response(Gtk.ResponseType.CANCEL)
        return False

    def choose() -> bool:
        found = [w for w in _widgets(dialog) if isinstance(w, Gtk.Button)
                 and (w.get_label() or "").replace("_", "") == words]
        if not found:
            if time.monotonic() < deadline:
                return True  # the popover is made on the run's next turn
            outcome["why"] = f"no {words!r} button appeared after Reset"
            GLib.idle_add(end)
            return False
        found[0].clicked()
        outcome["done"] = True
        GLib.timeout_add(100, end)
        return False

    def click_reset() -> bool:
        reset.clicked()
        GLib.timeout_add(50, choose)
        return False

    GLib.timeout_add(50, click_reset)
    outcome["run"] = bool(dialog.run())  # False: answered Cancel
    return outcome
