"""Network namespaces: enter one for the current thread, create and remove named ones.

setns(2) with CLONE_NEWNET moves only the calling thread. Sockets keep the namespace they were
created in, and threads inherit their creator's, so a ZeroMQ context whose first socket is made
inside a namespace runs its I/O threads (which open connecting TCP sockets) there for good; a
STREAM socket's listening socket is opened by the thread that calls bind.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from pathlib import Path
from collections.abc import Iterator

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def netns_path(name: str) -> Path:
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"bad namespace name {name!r}")
    return NETNS_DIR / name


@contextlib.contextmanager
def entered(name: str | None) -> Iterator[None]:
    """Run the body with the current thread in namespace `name` (None: stay where it is)."""
    if name is None:
        yield
        return
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(netns_path(name), os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def enter_for_good(name: str) -> None:
    """Move the calling thread into namespace `name` for the rest of its life (a process's main
    thread before it starts any other thread: the edge server's --netns)."""
    fd = os.open(netns_path(name), os.O_RDONLY)
    try:
        _setns(fd)
    finally:
        os.close(fd)


def list_names() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def create(name: str) -> None:
    """Create the named namespace (as `ip netns add`). Raises OSError (EEXIST, EPERM, ...)."""
    from pyroute2 import netns

    netns_path(name)
    if name in list_names():
        raise OSError(errno.EEXIST, f"network namespace {name} exists")
    netns.create(name)
    if name not in list_names():  # pyroute2 creates it in a child process and may not say why it failed
        raise OSError(errno.EPERM, f"could not create network namespace {name}")


def remove(name: str) -> bool:
    """Remove the named namespace if it exists (idempotent); its devices and qdiscs go with it once
    no process is left inside. True if something was removed."""
    from pyroute2 import netns

    if name not in list_names():
        return False
    try:
        netns.remove(name)
    except FileNotFoundError:
        return False
    return True


def current_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def inode_of(name: str) -> int | None:
    try:
        return os.stat(netns_path(name)).st_ino
    except OSError:
        return None
