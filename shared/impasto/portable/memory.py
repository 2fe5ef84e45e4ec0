"""Memory readings, per system: this process's resident memory (status's memory_bytes on
a CPU) and the machine's physical memory (the CPU device's memory_total).

- Linux: /proc/self/statm (resident pages) and sysconf's page size and page count.
- macOS: no /proc; getrusage's ru_maxrss, which is the peak resident size and counts
  bytes there (kilobytes on Linux), and sysconf for the total.
- Windows: no /proc, resource or sysconf; kernel32's K32GetProcessMemoryInfo (the
  working set) and GlobalMemoryStatusEx (ullTotalPhys) through ctypes.
Each answers None rather than raising where the system will not say: a status request
must never fail over a number.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

STATM = Path("/proc/self/statm")


def resident_bytes() -> int | None:
    """This process's resident memory in bytes (on macOS its peak), or None."""
    if sys.platform == "win32":
        return _windows_working_set()
    if sys.platform == "darwin":
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS
    try:
        return int(STATM.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def physical_bytes() -> int | None:
    """The machine's physical memory in bytes, or None."""
    if sys.platform == "win32":
        return _windows_physical()
    with contextlib.suppress(OSError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return None


if sys.platform == "win32":
    import ctypes
    from ctypes import wintypes

    class _ProcessMemoryCounters(ctypes.Structure):  # psapi.h PROCESS_MEMORY_COUNTERS
        _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD),
                    ("PeakWorkingSetSize", ctypes.c_size_t), ("WorkingSetSize", ctypes.c_size_t),
                    ("QuotaPeakPagedPoolUsage", ctypes.c_size_t),
                    ("QuotaPagedPoolUsage", ctypes.c_size_t),
                    ("QuotaPeakNonPagedPoolUsage", ctypes.c_size_t),
                    ("QuotaNonPagedPoolUsage", ctypes.c_size_t),
                    ("PagefileUsage", ctypes.c_size_t), ("PeakPagefileUsage", ctypes.c_size_t)]

    class _MemoryStatusEx(ctypes.Structure):  # sysinfoapi.h MEMORYSTATUSEX
        _fields_ = [("dwLength", wintypes.DWORD), ("dwMemoryLoad", wintypes.DWORD),
                    ("ullTotalPhys", ctypes.c_uint64), ("ullAvailPhys", ctypes.c_uint64),
                    ("ullTotalPageFile", ctypes.c_uint64), ("ullAvailPageFile", ctypes.c_uint64),
                    ("ullTotalVirtual", ctypes.c_uint64), ("ullAvailVirtual", ctypes.c_uint64),
                    ("ullAvailExtendedVirtual", ctypes.c_uint64)]

    def _windows_working_set() -> int | None:
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.GetCurrentProcess.restype = wintypes.HANDLE
        counters = _ProcessMemoryCounters()
        counters.cb = ctypes.sizeof(counters)
        # K32GetProcessMemoryInfo: psapi's call, in kernel32 since Windows 7.
        if not kernel32.K32GetProcessMemoryInfo(kernel32.GetCurrentProcess(),
                                                ctypes.byref(counters), counters.cb):
            return None
        return int(counters.WorkingSetSize)

    def _windows_physical() -> int | None:
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        status = _MemoryStatusEx()
        status.dwLength = ctypes.sizeof(status)
        if not kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
            return None
        return int(status.ullTotalPhys)
