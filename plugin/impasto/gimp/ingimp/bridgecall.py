"""The bridge as the plug-in runs it: the request written, the bridge program started
(no console window), its event lines read on a thread (Windows' select refuses pipes)
and turned into GIMP's progress bar, the live preview and each finished frame; Stop and
Cancel sent on its stdin from a small window while it works."""

import contextlib
import os
import subprocess
import time

import gi

gi.require_version("Gimp", "3.0")
import impasto_events as events  # noqa: E402
import impasto_pipes as pipes  # noqa: E402
import impasto_spawn as spawn  # noqa: E402
from gi.repository import Gimp  # noqa: E402
from impasto_common import CONFIG, Cancelled, PluginError, load_config  # noqa: E402


class StopControls:
    """In the interactive dialog's place while a run goes on: Stop (keep the image as it
    stands) and Cancel (keep nothing). Without a display (scripts, batch mode) it is
    absent and a run is stopped by its `stop-after` time."""

    def __init__(self, interactive, title):
        self.stop = self.cancel = False
        self.dialog = None
        if not interactive:
            return
        try:
            gi.require_version("Gtk", "3.0")
            from gi.repository import Gtk
        except (ImportError, ValueError):
            return
        self.gtk = Gtk
        d = Gtk.Dialog(title=title)
        d.add_button("_Cancel", 2)
        d.add_button("_Stop and keep", 1)
        label = Gtk.Label(label="Stylizing: the new layer updates as it goes.\n"
                          "Stop and keep: keep the image as it is now.\nCancel: keep nothing.")
        d.get_content_area().pack_start(label, True, True, 8)
        d.connect("response", self._response)
        with contextlib.suppress(ImportError, ValueError, AttributeError):
            gi.require_version("GimpUi", "3.0")
            from gi.repository import GimpUi

            GimpUi.window_set_transient(d)  # above GIMP's window, never behind it
        d.show_all()
        self.dialog = d

    def _response(self, _dialog, response):
        if response == 1:
            self.stop = True
        else:
            self.cancel = True

    def pump(self):
        if self.dialog is not None:
            while self.gtk.events_pending():
                self.gtk.main_iteration()

    def close(self):
        if self.dialog is not None:
            self.dialog.destroy()
            self.pump()
            self.dialog = None


def bridge_settings(cfg):
    """What every request takes from the bridge config: where the daemon is, how long it
    may stay silent, how to start one."""
    return {"address": cfg.get("address"), "timeout": float(cfg.get("timeout", 5.0)),
            "autostart": cfg.get("autostart"), "client": "gimp"}


def run_bridge(cfg, request, tmpdir, label, preview=None, controls=None, stop_after=0.0,
               on_frame=None):
    """Runs the bridge; feeds GIMP's progress bar and the preview; returns its final
    event. An animation's frames are handed to on_frame as they are done. Raises
    Cancelled when the user cancels."""
    req_path = os.path.join(tmpdir, "request.json")
    with open(req_path, "w") as f:
        f.write(request.to_line())  # impasto_request: the bridge parses the same shape
    command = list(cfg.get("bridge") or [])
    if not command:
        raise PluginError(f"{CONFIG} names no bridge program; run `impasto gimp install`.")
    env = dict(os.environ)
    env.update(cfg.get("env") or {})
    err_path = os.path.join(tmpdir, "bridge.err")
    try:
        with open(err_path, "wb") as err_file:
            proc = subprocess.Popen(command + ["run", req_path], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err_file, env=env,
                                    **spawn.hidden())
    except OSError as e:
        raise PluginError(f"Cannot run impasto's bridge {command[0]}: {e.strerror}. Is impasto still "
                          "installed there? Run `impasto gimp install` again.") from None
    final = None
    # A thread reads the bridge's stdout: Windows' select refuses pipes (WinError 10038).
    reader = pipes.LineReader(proc.stdout.fileno(), name="impasto-bridge-stdout")
    started = time.monotonic()
    said = None
    try:
        while True:
            if controls is not None:
                controls.pump()
                if controls.cancel and said != "cancel":
                    said = "cancel"
                    _tell(proc, b"cancel\n")
                elif controls.stop and said is None:
                    said = "stop"
                    _tell(proc, b"stop\n")
            if stop_after > 0 and said is None and time.monotonic() - started > stop_after:
                said = "stop"
                _tell(proc, b"stop\n")
            lines = reader.lines(timeout=0.1)
            if not lines and reader.eof:
                break
            latest_preview = None
            for line in lines:
                if not line.strip():
                    continue
                try:
                    ev = events.parse(line)
                except events.EventError as e:
                    # A bridge of another impasto version, or a broken one: say so and
                    # stop, rather than guess at what a line meant.
                    raise PluginError(f"impasto's bridge said something this plug-in does not "
                                      f"understand ({e}). Run `impasto gimp install` again so "
                                      "that plug-in and bridge match.") from None
                if isinstance(ev, events.Status):  # loading: the bar moves with it
                    Gimp.progress_set_text(f"Neural style{label}: {ev.text}")
                    Gimp.progress_pulse()
                elif isinstance(ev, events.Accepted) and ev.position:
                    Gimp.progress_set_text(f"Neural style{label}: waiting, {ev.position} job(s) ahead")
                elif isinstance(ev, events.Progress) and ev.frames:
                    total, frame = max(1, ev.total), ev.frame or 0
                    Gimp.progress_set_text(f"Neural style{label}: frame {frame + 1} of "
                                           f"{ev.frames}, step {ev.step} of {total}")
                    Gimp.progress_update(min(1.0, (frame + min(1.0, ev.step / total)) / ev.frames))
                elif isinstance(ev, events.Progress):
                    total = max(1, ev.total)
                    Gimp.progress_set_text(f"Neural style{label}: step {ev.step} of {total} (pass "
                                           f"{ev.scale + 1} of {ev.scales})")
                    Gimp.progress_update(min(1.0, ev.step / total))
                elif isinstance(ev, events.FrameDone):
                    if ev.frames:
                        Gimp.progress_set_text(f"Neural style{label}: frame {ev.frame + 1} of "
                                               f"{ev.frames} done")
                        Gimp.progress_update(min(1.0, (ev.frame + 1) / ev.frames))
                    if on_frame is not None:
                        on_frame(ev)
                elif isinstance(ev, events.Preview):
                    latest_preview = ev  # only the newest of a burst is drawn
                elif isinstance(ev, (events.Done, events.Error)):
                    final = ev
            if latest_preview is not None and preview is not None and final is None:
                preview.show(latest_preview.path, latest_preview.width, latest_preview.height,
                             latest_preview.step)
    finally:
        if proc.poll() is None and final is None:
            _tell(proc, b"cancel\n")
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if final is None:
        try:
            with open(err_path, errors="replace") as f:
                err = f.read()
        except OSError:
            err = ""
        raise PluginError("impasto's bridge stopped without an answer "
                          f"(exit {proc.returncode}): {err.strip()[-500:] or 'no output'}")
    if isinstance(final, events.Error):
        if final.code == "cancelled":
            raise Cancelled()
        raise PluginError(explain(final, cfg))
    return final


def _tell(proc, line):
    try:
        proc.stdin.write(line)
        proc.stdin.flush()
    except OSError:
        pass  # the bridge is gone; its output says why


def explain(final, cfg):
    """The bridge's error in GIMP's words: what to do, from where the user is."""
    message = final.message or final.code or "unknown error"
    if final.code == "unavailable" and not cfg.get("autostart"):
        address = cfg.get("address") or "the configured address"
        return (f"No impasto daemon answered at {address}. Start one in a terminal with "
                f"`impasto serve --bind {address}`, or let GIMP start it: run `impasto gimp "
                f"install --address {address}` again without --no-autostart.")
    if final.code == "out_of_memory":
        return message + " Lower the Working size in the dialog, or pick the Draft preset."
    return message


def library_names():
    """The daemon's style library, for the dialog's list (empty when no daemon answers:
    the name can still be typed)."""
    try:
        cfg = load_config()
        command = list(cfg.get("bridge") or [])
        env = {**os.environ, **(cfg.get("env") or {})}
        r = subprocess.run(command + ["styles", cfg.get("address") or ""], capture_output=True,
                           timeout=10, env=env, **spawn.hidden())
        for line in r.stdout.decode(errors="replace").splitlines():
            ev = events.parse(line)
            if isinstance(ev, events.StyleNames):
                return list(ev.names)
    except (OSError, ValueError, AttributeError, PluginError, subprocess.TimeoutExpired):
        pass
    return []


