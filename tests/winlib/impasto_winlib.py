"""The Windows-library mode of the tests (IMPASTO_WINDOWS_LIBRARY=1): impasto's own
modules run here as Windows' Python would run them, as far as its library goes.

Applied at interpreter start (tests/conftest.py installs a .pth line in the test venv
that calls apply() when the variable is set, so every child process the tests start,
`python -I` ones included, has it too). From then on every module named `impasto.*`
is executed with an `__import__` of its own, which hands it:

- `sys` with `platform == "win32"`, and `os` with `name == "nt"`: every per-system
  branch in impasto (`if sys.platform == "win32":`) takes its Windows side;
- `os` without what Windows' os module lacks (POSIX_ONLY_OS: O_DIRECTORY, O_NOFOLLOW,
  O_CLOEXEC, O_NONBLOCK, O_ACCMODE, fwalk, fstatvfs, fchmod, getuid, sysconf, ...),
  `supports_dir_fd` empty and `supports_follow_symlinks` only stat, as there; a call
  with dir_fd= (or follow_symlinks=False to anything but stat) raises Windows'
  NotImplementedError, os.listdir/scandir of a descriptor its TypeError, os.open of a
  folder its PermissionError, and os.open of a file for writing without O_BINARY is
  refused: Windows' C runtime opens it in text mode, turning every b"\\n" written into
  b"\\r\\n";
- `signal` without SIGUSR1, SIGHUP, SIGKILL and the other POSIX signals, `faulthandler`
  without register(), `select.select` refusing anything that is not a socket (WinError
  10038 on a pipe);
- no fcntl, resource, pwd, grp, termios, tty, pty or syslog (ImportError).

What it cannot be is Windows: the calls impasto makes only on Windows are stood in for
by their nearest Linux equivalent, and these stand-ins are where the mode proves
nothing (docs/portability.md):
- `msvcrt.locking` (LK_NBLCK, LK_LOCK, LK_UNLCK) is flock(2) on the descriptor;
- `ctypes.WinDLL("kernel32")`: OpenProcess/GetExitCodeProcess/CloseHandle answer from
  a signal-0 probe, K32GetProcessMemoryInfo from /proc/self/statm, GlobalMemoryStatusEx
  from sysconf;
- subprocess's Windows creation flags and STARTUPINFO are accepted: DETACHED_PROCESS
  becomes a new session, the window flags are dropped;
- os.O_BINARY and os.O_NOINHERIT exist (both mean nothing to Linux's open).
Modules outside impasto (the standard library's own, numpy, torch, zmq, pytest) keep
Linux's library and paths: only impasto's code is held to Windows'.
"""

from __future__ import annotations

import builtins
import ctypes
import errno
import fcntl as _fcntl
import importlib.abc
import importlib.machinery
import os as _os
import runpy
import select as _select
import signal as _signal
import socket
import stat
import subprocess as _subprocess
import sys as _sys
import time
import types
from pathlib import Path
from typing import Any

ENV = "IMPASTO_WINDOWS_LIBRARY"
PTH_NAME = "impasto_windows_library.pth"

# Names Linux's os module has and Windows' (Python 3.11) does not: typeshed's
# `sys.platform != "win32"` blocks, which is what pyright's Windows run checks too.
POSIX_ONLY_OS = frozenset("""
O_DIRECTORY O_NOFOLLOW O_CLOEXEC O_NONBLOCK O_NDELAY O_ACCMODE O_NOCTTY O_DSYNC O_SYNC
O_RSYNC O_ASYNC O_PATH O_TMPFILE O_NOATIME O_DIRECT O_LARGEFILE O_FSYNC O_EXLOCK O_SHLOCK
fwalk fstatvfs statvfs fchmod lchmod fchown chown lchown fchdir getuid geteuid getgid
getegid getgroups setuid seteuid setgid setegid getresuid getresgid initgroups sysconf
sysconf_names confstr confstr_names pathconf fpathconf pathconf_names getpgid getpgrp
setpgid setpgrp setsid getsid killpg fork forkpty openpty wait wait3 wait4 waitid
WNOHANG WUNTRACED WIFEXITED WEXITSTATUS WIFSIGNALED WTERMSIG WIFSTOPPED WSTOPSIG
sync fdatasync posix_fadvise posix_fallocate sched_getaffinity sched_setaffinity
getloadavg uname mkfifo mknod major minor makedev pipe2 pread pwrite readv writev
sendfile memfd_create eventfd ttyname nice getpriority setpriority ctermid
register_at_fork posix_spawn posix_spawnp RTLD_LAZY RTLD_NOW RTLD_GLOBAL
""".split())  # noqa: SIM905 - a table, read as one
POSIX_ONLY_SIGNALS = frozenset("""
SIGUSR1 SIGUSR2 SIGHUP SIGQUIT SIGKILL SIGALRM SIGCHLD SIGPIPE SIGCONT SIGSTOP SIGTSTP
SIGTTIN SIGTTOU SIGWINCH SIGIO SIGPOLL SIGPROF SIGVTALRM SIGXCPU SIGXFSZ SIGSYS SIGTRAP
SIGURG SIGBUS SIGPWR SIGRTMIN SIGRTMAX alarm pause setitimer getitimer siginterrupt
pthread_kill pthread_sigmask sigwait sigwaitinfo sigtimedwait sigpending SIG_BLOCK
SIG_UNBLOCK SIG_SETMASK ITIMER_REAL ITIMER_VIRTUAL ITIMER_PROF
""".split())  # noqa: SIM905
NO_SUCH_MODULES = frozenset(("fcntl", "resource", "pwd", "grp", "termios", "tty", "pty",
                             "syslog", "posix", "crypt", "spwd"))

# Windows' own os.open flags. Not their Windows values (0x8000, 0x80): 0x80 is O_EXCL to
# Linux, and the mode takes these bits off before Linux's open sees the flags.
O_BINARY = 1 << 28
O_NOINHERIT = 1 << 29
_WINDOWS_ONLY_FLAGS = O_BINARY | O_NOINHERIT

_applied = False


def applied() -> bool:
    return _applied


class _Restricted(types.ModuleType):
    """A module as Windows' Python has it: the real one, less `removed`, with `extra`
    names of its own. Attributes set on it go to the real module."""

    def __init__(self, real: types.ModuleType, removed: frozenset[str],
                 extra: dict[str, Any]) -> None:
        super().__init__(real.__name__, real.__doc__)
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "_removed", removed)
        self.__dict__.update(extra)

    def __getattr__(self, name: str) -> Any:
        if name in self._removed:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r} "
                                 f"(Windows' Python has none: {ENV}=1)")
        return getattr(self._real, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__:
            self.__dict__[name] = value
        else:
            setattr(self._real, name, value)

    def __dir__(self) -> list[str]:
        return sorted((set(dir(self._real)) | set(self.__dict__)) - self._removed)


def _refuse_dir_fd(name: str, kw: dict[str, Any], follow_ok: bool = False) -> None:
    for key in ("dir_fd", "src_dir_fd", "dst_dir_fd"):
        if kw.get(key) is not None:
            raise NotImplementedError(f"{name}: {key} unavailable on this platform")
    if kw.get("follow_symlinks") is False and not follow_ok:
        raise NotImplementedError(f"{name}: follow_symlinks unavailable on this platform")


def _wrap(fn: Any, follow_ok: bool = False) -> Any:
    def call(*args: Any, **kw: Any) -> Any:
        _refuse_dir_fd(fn.__name__, kw, follow_ok)
        return fn(*args, **kw)

    call.__name__ = fn.__name__
    return call


def _open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
    _refuse_dir_fd("open", {"dir_fd": dir_fd})
    try:
        is_dir = stat.S_ISDIR(_os.stat(path).st_mode)
    except OSError:
        is_dir = False
    if is_dir:  # Windows' os.open cannot open a folder
        raise PermissionError(errno.EACCES, "Permission denied", str(path))
    if flags & (_os.O_WRONLY | _os.O_RDWR) and not flags & O_BINARY:
        raise ValueError(f"os.open({str(path)!r}) for writing without os.O_BINARY: Windows' "
                         "C runtime opens it in text mode and writes b'\\r\\n' for every "
                         f"b'\\n' ({ENV}=1)")
    return _os.open(path, flags & ~_WINDOWS_ONLY_FLAGS, mode)


def _listing(fn: Any) -> Any:
    def call(path: Any = ".") -> Any:
        if isinstance(path, int):
            raise TypeError(f"{fn.__name__}: path should be string, bytes, os.PathLike or "
                            "None, not int")
        return fn(path)

    call.__name__ = fn.__name__
    return call


def _restricted_os() -> _Restricted:
    extra: dict[str, Any] = {"name": "nt", "O_BINARY": O_BINARY, "O_NOINHERIT": O_NOINHERIT,
                             "open": _open, "listdir": _listing(_os.listdir),
                             "scandir": _listing(_os.scandir)}
    for n in ("stat", "lstat", "unlink", "remove", "rmdir", "mkdir", "rename", "replace",
              "chmod", "access", "link", "symlink", "readlink", "utime"):
        extra[n] = _wrap(getattr(_os, n), follow_ok=(n == "stat"))
    extra["supports_dir_fd"] = set()
    extra["supports_fd"] = {extra["stat"], _os.truncate}
    extra["supports_follow_symlinks"] = {extra["stat"]}
    extra["supports_effective_ids"] = set()
    return _Restricted(_os, POSIX_ONLY_OS, extra)


def _is_socket(obj: Any) -> bool:
    if isinstance(obj, socket.socket):
        return True
    try:
        fd = obj if isinstance(obj, int) else obj.fileno()
        return stat.S_ISSOCK(_os.fstat(fd).st_mode)
    except (OSError, AttributeError, ValueError):
        return False


def _select_sockets(r: Any, w: Any, x: Any, *timeout: Any) -> Any:
    for obj in (*r, *w, *x):
        if not _is_socket(obj):
            raise OSError(10038, "An operation was attempted on something that is not a socket")
    return _select.select(r, w, x, *timeout)


class _Msvcrt(types.ModuleType):
    """msvcrt.locking on flock(2): per open file like LockFile is per handle, busy as
    PermissionError (EACCES) for LK_NBLCK, OSError(EDEADLOCK) after 10 tries of 1 s for
    LK_LOCK, as the C runtime does."""

    LK_UNLCK, LK_LOCK, LK_NBLCK, LK_RLCK, LK_NBRLCK = 0, 1, 2, 3, 4

    def locking(self, fd: int, mode: int, nbytes: int) -> None:
        if mode == self.LK_UNLCK:
            _fcntl.flock(fd, _fcntl.LOCK_UN)
            return
        tries = 10 if mode in (self.LK_LOCK, self.LK_RLCK) else 1
        for i in range(tries):
            try:
                _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if i + 1 < tries:
                    time.sleep(1)
        if tries == 1:
            raise PermissionError(errno.EACCES, "Permission denied")
        raise OSError(errno.EDEADLOCK, "Resource deadlock avoided")


class _Kernel32:
    """The kernel32 calls impasto makes through ctypes, answered from Linux."""

    def __init__(self) -> None:
        self._last_error = 0

    def OpenProcess(self, access: int, inherit: bool, pid: int) -> int:  # noqa: N802
        try:
            _os.kill(pid, 0)
        except ProcessLookupError:
            self._last_error = 87  # ERROR_INVALID_PARAMETER: no such process
            return 0
        except PermissionError:
            self._last_error = 5  # ERROR_ACCESS_DENIED
            return 0
        return pid

    def GetExitCodeProcess(self, handle: int, code: Any) -> int:  # noqa: N802
        target = getattr(code, "_obj", code)
        target.value = 259  # STILL_ACTIVE: OpenProcess found it alive
        return 1

    def CloseHandle(self, handle: int) -> int:  # noqa: N802
        return 1

    def K32GetProcessMemoryInfo(self, process: Any, counters: Any, size: int) -> int:  # noqa: N802
        target = getattr(counters, "_obj", counters)
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        target.WorkingSetSize = pages * _os.sysconf("SC_PAGE_SIZE")
        return 1

    def GetCurrentProcess(self) -> int:  # noqa: N802
        return -1

    def GlobalMemoryStatusEx(self, status: Any) -> int:  # noqa: N802
        target = getattr(status, "_obj", status)
        target.ullTotalPhys = _os.sysconf("SC_PAGE_SIZE") * _os.sysconf("SC_PHYS_PAGES")
        return 1


class _Function:
    """A ctypes function stand-in: takes restype/argtypes, calls the method."""

    def __init__(self, fn: Any) -> None:
        self._fn = fn
        self.restype: Any = None
        self.argtypes: Any = None

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)


class _WinDLL:
    def __init__(self, name: str, *args: Any, **kw: Any) -> None:
        if name.lower().removesuffix(".dll") != "kernel32":
            raise OSError(f"{name}: only kernel32 is stood in for ({ENV}=1)")
        self._k = _Kernel32()
        self._functions: dict[str, _Function] = {}

    def __getattr__(self, name: str) -> _Function:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._functions:
            self._functions[name] = _Function(getattr(self._k, name))
        return self._functions[name]


_kernel32: _WinDLL | None = None


def _windll(name: str, *args: Any, **kw: Any) -> _WinDLL:
    global _kernel32
    if _kernel32 is None:
        _kernel32 = _WinDLL(name)
    return _kernel32


def _get_last_error() -> int:
    return _kernel32._k._last_error if _kernel32 is not None else 0


class _StartupInfo:
    def __init__(self, **kw: Any) -> None:
        self.dwFlags = 0
        self.wShowWindow = 0
        self.__dict__.update(kw)


CREATE_NEW_PROCESS_GROUP = 0x00000200
DETACHED_PROCESS = 0x00000008
CREATE_NO_WINDOW = 0x08000000


def _windows_popen_kw(kw: dict[str, Any]) -> dict[str, Any]:
    flags = kw.pop("creationflags", 0) or 0
    kw.pop("startupinfo", None)
    if flags & (DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP):
        kw["start_new_session"] = True
    return kw


class _Popen(_subprocess.Popen):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **_windows_popen_kw(kw))


def _run(*args: Any, **kw: Any) -> Any:
    return _subprocess.run(*args, **_windows_popen_kw(kw))


def _restricted_subprocess() -> _Restricted:
    extra: dict[str, Any] = {
        "Popen": _Popen, "run": _run, "STARTUPINFO": _StartupInfo,
        "STARTF_USESHOWWINDOW": 0x1, "SW_HIDE": 0,
        "CREATE_NEW_PROCESS_GROUP": CREATE_NEW_PROCESS_GROUP,
        "DETACHED_PROCESS": DETACHED_PROCESS, "CREATE_NO_WINDOW": CREATE_NO_WINDOW,
        "check_output": lambda *a, **k: _run(*a, stdout=_subprocess.PIPE, check=True,
                                             **k).stdout,
        "call": lambda *a, **k: _run(*a, **k).returncode,
    }
    return _Restricted(_subprocess, frozenset(), extra)


class _Sys(types.ModuleType):
    """sys with platform "win32"; everything else, read or set, is the real sys."""

    def __init__(self) -> None:
        super().__init__("sys")
        self.__dict__["platform"] = "win32"

    def __getattr__(self, name: str) -> Any:
        return getattr(_sys, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(_sys, name, value)


def _modules() -> dict[str, types.ModuleType]:
    import faulthandler

    msvcrt = _Msvcrt("msvcrt")
    ctypes_mod = _Restricted(ctypes, frozenset(), {
        "WinDLL": _windll, "get_last_error": _get_last_error, "windll": _LazyWindll()})
    return {
        "sys": _Sys(),
        "os": _restricted_os(),
        "signal": _Restricted(_signal, POSIX_ONLY_SIGNALS,
                              {"CTRL_C_EVENT": 0, "CTRL_BREAK_EVENT": 1}),
        "select": _Restricted(_select, frozenset(("poll", "epoll", "devpoll", "kqueue")),
                              {"select": _select_sockets}),
        "faulthandler": _Restricted(faulthandler, frozenset(("register", "unregister")), {}),
        "subprocess": _restricted_subprocess(),
        "ctypes": ctypes_mod,
        "msvcrt": msvcrt,
    }


class _LazyWindll:
    def __getattr__(self, name: str) -> _WinDLL:
        return _windll(name)


_MODULES: dict[str, types.ModuleType] = {}
_real_import = builtins.__import__


def _import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (),
            level: int = 0) -> Any:
    if level == 0:
        top = name.partition(".")[0]
        if top in NO_SUCH_MODULES:
            raise ModuleNotFoundError(f"No module named {name!r} (Windows' Python has none: "
                                      f"{ENV}=1)", name=name)
        if top in _MODULES:
            if top == "msvcrt":
                return _MODULES[top]
            mod = _real_import(name, globals, locals, fromlist, level)
            if mod is _sys.modules.get(top):
                return _MODULES[top]
            return mod  # a submodule asked for with a fromlist (os.path, ctypes.wintypes)
    return _real_import(name, globals, locals, fromlist, level)


_BUILTINS: dict[str, Any] = {}


class _Loader(importlib.abc.Loader):
    """Runs an impasto module with the mode's __import__."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._real.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__dict__["__builtins__"] = _BUILTINS
        self._real.exec_module(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if not fullname.startswith("impasto."):
            return None
        for finder in _sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module") and spec.origin \
                and spec.origin.endswith(".py"):
            spec.loader = _Loader(spec.loader)
        return spec


_real_run_code = runpy._run_code  # type: ignore[attr-defined]


def _run_code(code: Any, run_globals: dict[str, Any], init_globals: Any = None,
              mod_name: Any = None, mod_spec: Any = None, pkg_name: Any = None,
              script_name: Any = None) -> Any:
    # `python -m impasto.cli.main`: runpy runs the module's code itself, not its loader.
    name = getattr(mod_spec, "name", None) or mod_name or ""
    if name.startswith("impasto."):
        run_globals["__builtins__"] = _BUILTINS
    return _real_run_code(code, run_globals, init_globals, mod_name, mod_spec, pkg_name,
                          script_name)


def apply() -> None:
    """Hold every impasto module imported from now on to Windows' library. Refuses when
    one is loaded already: it would keep Linux's, and the mode would be half a mode."""
    global _applied
    if _applied:
        return
    loaded = sorted(n for n in _sys.modules if n.startswith("impasto."))
    if loaded:
        raise RuntimeError(f"{ENV}=1 applied too late: {', '.join(loaded)} already loaded "
                           "with Linux's library")
    _MODULES.update(_modules())
    _BUILTINS.update(builtins.__dict__)
    _BUILTINS["__import__"] = _import
    _sys.meta_path.insert(0, _Finder())
    runpy._run_code = _run_code  # type: ignore[attr-defined]
    _applied = True


def pth_line(here: Path) -> str:
    """The .pth line that applies the mode at every start of this venv's interpreter
    where the variable is set (it does nothing elsewhere)."""
    return (f"import os, sys; os.environ.get({ENV!r}) == '1' and (sys.path.append({str(here)!r})"
            " or __import__('impasto_winlib').apply())\n")


def install_pth(site_dir: Path) -> Path:
    """Write (or refresh) the .pth line into `site_dir`."""
    path = site_dir / PTH_NAME
    line = pth_line(Path(__file__).resolve().parent)
    if not path.is_file() or path.read_text() != line:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(line)
        tmp.replace(path)
    return path
