"""Timing and memory helpers: interleaved repeats, turn-taking, medians, peak resident memory, the machine.

Why interleaved: on a shared machine the load changes over minutes, so the candidates of one comparison run in
turn within each repeat (A B A B ...) and are compared by the ratio of their medians. Long generations go further
(``taking_turns``): each runs in its own thread and they take turns at every decoder step, so all of them see the
same load even when the budget allows one run of each.
"""
from __future__ import annotations

import ctypes
import os
import platform
import re
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import torch


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def timed(fn: Callable):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def progress(message: str) -> None:
    """One line on stderr per timed run, so a long benchmark shows where it is."""
    print(message, file=sys.stderr, flush=True)


def interleaved(candidates: dict[str, Callable], repeats: int) -> tuple[dict[str, list[float]], dict]:
    """Run each candidate once per repeat, in turn; -> ({name: [seconds per repeat]}, {name: last result})."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    results: dict = {}
    for repeat in range(repeats):
        for name, fn in candidates.items():
            results[name], seconds = timed(fn)
            times[name].append(seconds)
            progress(f"  [{repeat + 1}/{repeats}] {name}: {seconds:.2f} s")
    return times, results


class Turns:
    """Threads that take turns: ``take(name)`` at each step hands the turn to the next path and waits for it.

    Each path is timed only while it holds the turn, so the others' work is not counted in its time.
    """

    def __init__(self, names: list[str]):
        self.active, self.holder, self.since = list(names), names[0], time.perf_counter()
        self.seconds, self.changed = dict.fromkeys(names, 0.0), threading.Condition()

    def take(self, name: str) -> None:
        with self.changed:
            if self.holder == name:  # a step is done: pass the turn on
                self._pass(name, keep=True)
            self.changed.wait_for(lambda: self.holder == name)
            self.since = time.perf_counter()

    def done(self, name: str) -> None:
        with self.changed:
            if self.holder == name:
                self._pass(name, keep=False)
            else:
                self.active.remove(name)

    def _pass(self, name: str, keep: bool) -> None:
        self.seconds[name] += time.perf_counter() - self.since
        position = self.active.index(name)
        if not keep:
            self.active.remove(name)
        if self.active:
            self.holder = self.active[(position + keep) % len(self.active)]
        self.changed.notify_all()


def taking_turns(candidates: dict[str, Callable]) -> tuple[dict[str, float], dict]:
    """Run ``candidates[name](turn)`` in threads that take turns whenever they call ``turn()`` (once per step).

    -> ({name: seconds while holding the turn}, {name: result}).
    """
    turns, results, errors = Turns(list(candidates)), {}, []

    def work(name: str, fn: Callable) -> None:
        try:
            turns.take(name)
            results[name] = fn(lambda: turns.take(name))
        except BaseException as error:  # noqa: BLE001 - re-raised below, after the other paths finish
            errors.append(error)
        finally:
            turns.done(name)

    threads = [threading.Thread(target=work, args=item) for item in candidates.items()]
    [t.start() for t in threads], [t.join() for t in threads]
    if errors:
        raise errors[0]
    for name, seconds in turns.seconds.items():
        progress(f"  {name}: {seconds:.2f} s (taking turns)")
    return turns.seconds, results


def _status_kb(field: str) -> int | None:
    """A field of /proc/self/status in kB (Linux), or None elsewhere."""
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _return_free_memory() -> None:
    """Hand memory freed by earlier runs back to the OS (glibc keeps it), so "before" is what is in use."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def resident_mb() -> float | None:
    """Resident memory of this process now, in MB (Linux)."""
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb else None


def peak_rss_during(fn: Callable) -> tuple[object, float | None, float | None]:
    """(result, peak resident MB during the call, resident MB before it).

    Linux lets a process reset its high-water mark (``echo 5 > /proc/self/clear_refs``), so the peak of one call
    can be read in-process from VmHWM; elsewhere both are None.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return fn(), None, None
    _return_free_memory()
    before = resident_mb()
    result = fn()
    peak = _status_kb("VmHWM")
    return result, (peak / 1024 if peak else None), before


def machine() -> dict:
    """CPU model, cores, memory, threads and load: printed with every table."""
    model = platform.processor() or platform.machine()
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M).group(1).strip()
    except (OSError, AttributeError):
        pass
    memory_gb = None
    try:
        memory_gb = round(int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 2**20, 1)
    except (OSError, AttributeError):
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": model, "cores": os.cpu_count(), "memory_gb": memory_gb, "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "load_average_1m": round(load[0], 2) if load else None}
