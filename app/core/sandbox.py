"""Work on untrusted input in a child process that cannot take its parent down.

A file uploaded by a user is read by a forked child (``stream``) or by worker processes
confined the same way (``confine`` as a pool's initializer): the child's address space is
capped (``RLIMIT_AS``: what it already holds plus ``memory_mb``), its CPU time is capped
(``RLIMIT_CPU``), and it dies with its parent (``PR_SET_PDEATHSIG`` on Linux, and a thread
that watches ``os.getppid()`` everywhere else or when the parent died before the child could
ask). A file that still makes the reader blow up (an allocation that aborts the process, a
loop that never ends) ends the child; the parent raises ``ChildFailed`` and carries on.
"""
from __future__ import annotations

import ctypes
import faulthandler
import multiprocessing
import os
import resource
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass

PR_SET_PDEATHSIG = 1
WATCH_SECONDS = 0.5
# a child that neither sends anything nor uses any CPU for this long is stuck (a lock left
# held when an allocation failed under the memory cap): it is ended at once instead of at the
# end of its whole time limit
STALL_SECONDS = 30.0


@dataclass(frozen=True)
class Limits:
    memory_mb: int = 2048  # address space a child may take beyond what it inherited
    timeout_s: float = 600.0  # CPU seconds of a child; seconds the parent waits for each item


class ChildFailed(Exception):
    """The child ended without finishing: ``reason`` is "memory", "timeout" or "crash"."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _address_space() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def die_with_parent(parent: int) -> None:
    """End this process as soon as ``parent`` is no longer its parent."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the request above: nobody would tell
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(WATCH_SECONDS)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def confine(limits: Limits, parent: int) -> None:
    """In a child: cap its memory and CPU time and tie its life to ``parent``'s. Used as the
    initializer of worker pools and by ``stream``."""
    die_with_parent(parent)
    faulthandler.disable()  # an allocation refused by the limit aborts the child: no dump of the parent's stack
    if limits.memory_mb > 0:
        cap = _address_space() + limits.memory_mb * 1024 * 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    if limits.timeout_s > 0:
        seconds = int(limits.timeout_s) + 1
        soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        if hard != resource.RLIM_INFINITY:
            seconds = min(seconds, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, hard))


def failure(exitcode: int | None) -> ChildFailed:
    """What a child's end says about why it ended."""
    if exitcode == -signal.SIGXCPU or exitcode == -signal.SIGKILL:
        return ChildFailed("timeout" if exitcode == -signal.SIGXCPU else "crash", f"exit {exitcode}")
    if exitcode == -signal.SIGABRT or exitcode == -signal.SIGSEGV or exitcode == -signal.SIGBUS:
        return ChildFailed("memory", f"exit {exitcode}")  # an allocation the limit refused
    return ChildFailed("crash", f"exit {exitcode}")


def _child(conn, produce: Callable[..., Iterator], args: tuple, limits: Limits, parent: int) -> None:
    try:
        confine(limits, parent)
        for item in produce(*args):
            conn.send(("item", item))
        conn.send(("end", None))
    except MemoryError:
        _send_quietly(conn, ("failed", ChildFailed("memory")))
    except BaseException as exc:  # everything goes to the parent, which decides
        try:
            conn.send(("error", exc))
        except Exception:
            _send_quietly(conn, ("failed", ChildFailed("crash", traceback.format_exc(limit=-3))))
    finally:
        conn.close()


def _send_quietly(conn, message) -> None:
    try:
        conn.send(message)
    except Exception:
        pass


def _cpu_ticks(pid: int) -> int | None:
    """The user + system CPU time of the process's main thread in clock ticks (Linux /proc),
    or None. The main thread does the reading; the parent-watch thread wakes twice a second and
    would make a stuck process look busy."""
    try:
        with open(f"/proc/{pid}/task/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    except (OSError, ValueError, IndexError):
        return None


def _wait_for_data(receiver, child, timeout_s: float) -> str | None:
    """None once the child has sent something (or ended); "no data" when ``timeout_s`` (0:
    no limit) passed first; "stalled" when its CPU time stood still for STALL_SECONDS while
    nothing came (it is stuck)."""
    deadline = time.monotonic() + timeout_s if timeout_s > 0 else None
    last_ticks, still_since = _cpu_ticks(child.pid), time.monotonic()
    while True:
        step = min(1.0, max(deadline - time.monotonic(), 0)) if deadline else 1.0
        if receiver.poll(step):
            return None
        now = time.monotonic()
        if deadline and now >= deadline:
            return "no data"
        if not child.is_alive():
            return None  # recv() reads what it sent before it ended, or reports the EOF
        ticks = _cpu_ticks(child.pid)
        if ticks is None or ticks != last_ticks:
            last_ticks, still_since = ticks, now
        elif now - still_since >= STALL_SECONDS:
            return "stalled"


def stream(produce: Callable[..., Iterator], args: tuple, limits: Limits) -> Iterator:
    """The items of ``produce(*args)``, computed in a confined child and sent back one by
    one. An exception raised in the child is raised here; a child that dies, runs out of
    memory, sends nothing for ``limits.timeout_s`` seconds or is stuck (no CPU used for
    STALL_SECONDS) raises ``ChildFailed``. Closing
    the iterator early ends the child."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    # fork: nothing is pickled on the way in and nothing is imported again; the child leaves
    # through os._exit, so the parent's database connections are never closed twice
    child = context.Process(target=_child, args=(sender, produce, args, limits, os.getpid()), daemon=True)
    child.start()
    sender.close()
    try:
        while True:
            waited = _wait_for_data(receiver, child, limits.timeout_s)
            if waited:
                raise ChildFailed("timeout", waited)
            try:
                kind, payload = receiver.recv()
            except (EOFError, OSError):
                child.join(5)
                raise failure(child.exitcode) from None
            except MemoryError:
                raise ChildFailed("memory") from None
            if kind == "item":
                yield payload
            elif kind == "end":
                return
            else:  # "error": the child's exception; "failed": a ChildFailed
                raise payload
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join()
        child.close()
