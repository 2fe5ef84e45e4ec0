"""The Set Up Server procedure and its dialog: a private Python environment with the
torch that fits this computer, impasto installed into it from the wheel beside the
plug-in, and the plug-in connected to it; or all of that removed.

The archive carries impasto_serversetup.py (impasto.gimp.serversetup, standard library
only) and impasto's wheel beside the plug-in; the set-up runs that program's plan, then
has the new environment write the bridge config (`impasto gimp install --plugin-dir`)."""

import contextlib
import os
from pathlib import Path

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gio", "2.0")
import impasto_dialogshot as dialogshot  # noqa: E402
from gi.repository import Gimp, Gio, GLib, GObject  # noqa: E402
from impasto_common import (  # noqa: E402
    CONFIG,
    HERE,
    SETUP_PROC,
    PluginError,
    choice,
    load_config,
    tell,
    trace,
)

SETUP_TEXT = {
    "action": ("Action", "Set up impasto's server (again, to repair it), or remove it"),
    "backend": ("Graphics", "Which processor paints: Automatic picks the graphics card this "
                "computer has; CPU works everywhere, only slower"),
    "folder": ("Install into", "Folder for the server (a private Python with PyTorch, 0.3 to "
               "5 GB); none chosen = the folder the note below names, in your user data"),
    "python": ("Python", "A Python 3.11 or newer to build the server with; none chosen = "
               "found automatically (the note below names it)"),
    "wheels": ("Offline packages", "Only for computers without internet: a folder holding "
               "every package file the server needs; none chosen = download them"),
    "weights": ("Model", "The picture-recognition network that judges style and content"),
    "weights-file": ("Model file", "Your own VGG19 weights file, when Model says so"),
}
SETUP_ACTIONS = (("install", "Set up or repair"), ("uninstall", "Remove"))
MODELS = (("auto", "ImageNet VGG19, from the package (no download)"),
          ("file", "A VGG19 weights file of yours"),
          ("random", "Random test patterns (not art)"))
# The words for each back end; the back ends themselves are impasto_serversetup.BACKENDS.
BACKEND_WORDS = {"cuda": "NVIDIA graphics (CUDA)", "rocm": "AMD graphics (ROCm, Linux)",
                 "xpu": "Intel graphics (XPU)", "mps": "Apple graphics (Apple Silicon)",
                 "cpu": "CPU only"}
FIELDS = ["action", "backend", "folder", "python", "wheels", "weights", "weights-file"]
# Greyed out when the action is Remove: only the folder matters then.
INSTALL_ONLY = ["backend", "python", "wheels", "weights", "weights-file"]


def backends():
    try:
        import impasto_serversetup as ss

        names = ss.BACKENDS
    except ImportError:  # reported when the set-up runs
        names = tuple(BACKEND_WORDS)
    return (("auto", "Automatic"),) + tuple((b, BACKEND_WORDS.get(b, b)) for b in names)


def add_arguments(p):
    flags = GObject.ParamFlags.READWRITE
    t = SETUP_TEXT
    p.add_choice_argument("action", t["action"][0], t["action"][1], choice(SETUP_ACTIONS),
                          "install", flags)
    p.add_choice_argument("backend", t["backend"][0], t["backend"][1], choice(backends()),
                          "auto", flags)
    # Folder and file pickers; none chosen means the default, which the live note names.
    folder = Gimp.FileChooserAction.SELECT_FOLDER
    p.add_file_argument("folder", t["folder"][0], t["folder"][1], folder, True, None, flags)
    p.add_file_argument("python", t["python"][0], t["python"][1], Gimp.FileChooserAction.OPEN,
                        True, None, flags)
    p.add_file_argument("wheels", t["wheels"][0], t["wheels"][1], folder, True, None, flags)
    p.add_choice_argument("weights", t["weights"][0], t["weights"][1], choice(MODELS), "auto",
                          flags)
    p.add_file_argument("weights-file", t["weights-file"][0], t["weights-file"][1],
                        Gimp.FileChooserAction.OPEN, True, None, flags)


def path_of(config, key):
    """A file argument's path, or None (none chosen)."""
    f = config.get_property(key)
    return f.get_path() if isinstance(f, Gio.File) and f.get_path() else None


def defaults_note(config):
    """What the pickers left empty stand for, in words: a picker cannot show a folder
    that does not exist yet, or a Python still being looked for."""
    try:
        ss = setup_module()
        folder = path_of(config, "folder") or f"{ss.default_venv()} (the default)"
    except PluginError:
        return ""
    python = path_of(config, "python") or "found automatically"
    wheels = path_of(config, "wheels") or "none: downloads what it needs"
    return f"Install into: {folder}\nPython: {python}\nOffline packages: {wheels}\n"


def weights_of(config):
    """What `impasto gimp install --weights` takes: auto, random, or a file's path."""
    model = config.get_property("weights")
    if model == "file":
        path = path_of(config, "weights-file")
        if path is None:
            raise PluginError("Model says 'A VGG19 weights file of yours', but no Model file "
                              "is chosen.")
        return path
    return model


def setup_module():
    try:
        import impasto_serversetup as ss
    except ImportError:
        raise PluginError("impasto_serversetup.py is missing beside the plug-in: unzip the "
                          "impasto-gimp archive into GIMP's plug-ins folder again.") from None
    return ss


def setup_plan(config, survey=None, wait=True):
    """What the set-up would do with these settings: (module, plan or None, words). The
    slow questions (graphics card, Pythons: probes of up to a minute) go to `survey`,
    asked once each on a thread; without `wait`, words say it is still looking."""
    ss = setup_module()
    survey = survey or ss.pythons.Survey()
    venv = Path(path_of(config, "folder") or ss.default_venv())
    if config.get_property("action") == "uninstall":
        return ss, None, f"Removes the server in {venv}."
    python = path_of(config, "python")
    wheels = path_of(config, "wheels")
    facts = survey.ask("facts", ss.gather_facts, wait)
    found = survey.ask(("python", python, bool(wheels)),
                       lambda: ss.choose_python(python, bool(wheels)), wait)
    if facts is None or found is None:
        return ss, None, "Looking at this computer: its graphics card and its Python..."
    for ok, answer in (facts, found):
        if not ok:
            raise PluginError(str(answer))
    backend, why = config.get_property("backend"), ""
    if backend == "auto":
        backend, why = ss.choose_backend(facts[1])
        why = f" ({why})"
    try:
        plan = ss.make_plan(venv, backend, ss.default_package(Path(ss.__file__)), found[1],
                            Path(wheels) if wheels else None, cuda=ss.cuda_for(facts[1]))
        ss.check_plan(plan)
    except ss.SetupError as e:
        raise PluginError(str(e)) from None
    size = (f"downloads about {plan.download_mb} MB" if plan.download_mb
            else f"installs from {wheels} only")
    base = " with its own Python (none here can be trusted)" if plan.uv else ""
    model = dict(MODELS).get(config.get_property("weights"), "")
    python_words = f", built with {found[1][0]}" if found[1] else ""
    return ss, plan, (f"{backend.upper()}{why}: {size} into {venv}{base}{python_words}. "
                      f"Model: {model}. The log is {venv.parent / 'setup.log'}.")


def server_setup(config, survey=None):
    """Runs the set-up (or removal) the settings say, with GIMP's progress bar."""
    ss, plan, words = setup_plan(config, survey)
    if plan is None:
        venv = Path(path_of(config, "folder") or ss.default_venv())
        gone = ss.uninstall(venv)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(CONFIG)  # without it, the plug-in offers the set-up again
        tell(f"impasto: removed the server in {venv}." if gone else
             f"impasto: no server to remove in {venv}; the plug-in is disconnected.")
        return
    log = plan.venv.parent / "setup.log"
    Gimp.progress_init(f"Setting up impasto: {words}")

    def progress(i, n, what):
        Gimp.progress_update(i / n)
        Gimp.progress_set_text(f"impasto set-up, {min(i + 1, n)} of {n}: {what}")
        trace(event="setup", step=i, total=n, text=what)

    try:
        exe = ss.run_plan(plan, log, progress, pulse=Gimp.progress_pulse)
        ss.connect_plugin(exe, Path(HERE), weights_of(config), log)
    except ss.SetupError as e:
        raise PluginError(str(e)) from None
    except OSError as e:  # a folder it cannot make, a full disk: the reason, not a traceback
        raise PluginError(f"the set-up stopped: {e}. Log: {log}") from None
    finally:
        Gimp.progress_end()
    tell(f"impasto is set up ({plan.source.backend}): Filters > Artistic > Neural Style... "
         f"now paints with it. Log: {log}")


def run_setup(procedure, run_mode, image, drawables, config, data):
    if run_mode == Gimp.RunMode.INTERACTIVE:
        gi.require_version("GimpUi", "3.0")
        from gi.repository import GimpUi

        GimpUi.init(SETUP_PROC)
        dialog = GimpUi.ProcedureDialog.new(procedure, config, "Set up impasto")
        dialog.fill(FIELDS)
        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk

        note = Gtk.Label(label="", xalign=0.0)
        note.set_line_wrap(True)
        note.set_max_width_chars(60)
        dialog.get_content_area().pack_end(note, False, False, 4)

        def explain(*_args):
            try:
                words = setup_plan(config, survey, wait=False)[2]
            except PluginError as e:
                words = str(e)
            note.set_text(defaults_note(config) + words)
            return False  # as an idle callback: once

        def greyed(*_args):
            # Remove needs only the folder; the model file only when Model asks for one.
            removing = config.get_property("action") == "uninstall"
            for key in INSTALL_ONLY:
                widget = dialog.get_widget(key, GObject.TYPE_NONE)
                if widget is not None:
                    widget.set_sensitive(not removing and (
                        key != "weights-file" or config.get_property("weights") == "file"))

        config.connect("notify", greyed)
        greyed()

        # The Python search and GPU detection run once each, on a thread; the answer
        # comes back to GTK's loop through GLib.idle_add.
        try:
            survey = setup_module().pythons.Survey(lambda: GLib.idle_add(explain))
        except PluginError as e:
            return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR,
                                               GLib.Error(f"impasto: {e}"))
        config.connect("notify", explain)
        explain()
        note.show()
        if dialogshot.capture(dialog, "setup"):
            dialog.destroy()
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        ok = dialog.run()
        dialog.destroy()
        if not ok:
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    else:
        survey = None
    try:
        server_setup(config, survey)
    except PluginError as e:
        return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR,
                                           GLib.Error(f"impasto: {e}"))
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)


def server_problem():
    """Why the configured server cannot start (its base Python is gone), or None."""
    try:
        return setup_module().server_problem(str((load_config().get("bridge") or [""])[0]))
    except (PluginError, OSError, TypeError, AttributeError):
        return None


def offer_setup(image):
    """Interactive runs with no server: open the set-up dialog; True once one is set up."""
    proc = Gimp.get_pdb().lookup_procedure(SETUP_PROC)
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
    cfg.set_property("image", image)
    result = proc.run(cfg)
    return result.index(0) == Gimp.PDBStatusType.SUCCESS and os.path.exists(CONFIG)


