"""Hashing small files in a helper process, beside the scan's own threads.

A small file costs a few short system calls and a little Python; two threads
of one process doing them mostly wait for each other's GIL (measured slower
than one), so the hash pass reads small files one thread at a time. A second
process has a GIL of its own: while one thread of the scan hashes a chunk of
small files, another hands the next chunk to a helper and waits for its answer.

The helper is `python -m sneakernet.catalog.hashworker`, talking over its
stdin and stdout: each request is a chunk of (path, size, mtime_ns), each
answer one (hash, size, mtime_ns, inode, device) or (None, problem, message)
per file, framed by a tag and a length and encoded with `marshal` (both ends are this
module). It imports nothing heavy, ignores Ctrl-C (the scan decides), and ends
when its stdin closes, which is also what happens when the scan is killed.
Whatever goes wrong with a helper (it dies, or its stdout carries something
else than answers), the scan hashes that chunk itself.
"""

from __future__ import annotations

import marshal
import os
import signal
import struct
import subprocess
import sys
import threading
from typing import BinaryIO

from sneakernet.catalog.hashing import (
    ChangedWhileReading,
    FileHash,
    NotRegularFile,
    aligned_buffer,
    hash_file,
)

_RETRIES_WHEN_CHANGING = 2
# A frame: a tag, the length, then the marshal data. The tag tells a helper's answer
# from anything else that reached its stdout (a sitecustomize's print, a wrapper's
# banner), which read as a length would have the scan allocate and wait for gigabytes.
_FRAME = struct.Struct("<4sQ")
_TAG = b"snh1"
_MOST_FRAME = 256 << 20  # a chunk of 512 paths of 4 KiB is 2 MiB

# One result per file: (FileHash, None, None) or (None, status, message).
Outcome = tuple[FileHash | None, str | None, str | None]
# What a helper is asked: (path, size, mtime_ns) as the walk saw them.
Request = tuple[str | bytes, int, int]


def hash_one(path: str | bytes, buffer: memoryview, expected: tuple[int, int]) -> Outcome:
    """Hash one file of a scan, retrying a file that changes; never raises for the file."""
    for attempt in range(_RETRIES_WHEN_CHANGING + 1):
        try:
            return hash_file(path, buffer, expected if attempt == 0 else None), None, None
        except ChangedWhileReading:
            continue
        except FileNotFoundError:
            return None, "vanished", "deleted before it could be read"
        except NotRegularFile:
            return None, "vanished", "replaced by something that is not a regular file"
        except OSError as exc:
            return None, "unreadable", exc.strerror or str(exc)
    return None, "changing", "changed while being read; not recorded with a hash"


class HelperGone(Exception):
    """The helper process could not take or answer a request; hash the chunk here."""


class Helper:
    """One helper process, used by one thread at a time."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = subprocess.Popen(
            # -P: `-m` would put the working folder first on sys.path, and a scan is
            # often run from inside the dataset: its struct.py or typing.py would be
            # imported (run) by the helper.
            [sys.executable, "-P", "-m", "sneakernet.catalog.hashworker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def hash(self, requests: list[Request]) -> list[Outcome]:
        """The outcome of each request, in order; HelperGone if the helper failed."""
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            raise HelperGone("closed")
        try:
            _send(proc.stdin, marshal.dumps(requests))
            return _outcomes(marshal.loads(_receive(proc.stdout)), len(requests))
        except (OSError, EOFError, ValueError, TypeError, MemoryError) as exc:
            self.close()
            raise HelperGone(str(exc)) from exc

    def close(self) -> None:
        """End the helper: its stdin closes, it exits; killed if it does not within 5 s."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for pipe in (proc.stdin, proc.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class HelperPool:
    """Up to `most` helpers, each lent to one thread at a time and started on demand.

    After one helper fails the pool lends no more: the scan's threads do the rest.
    """

    def __init__(self, most: int) -> None:
        self.most = most
        self._lock = threading.Lock()
        self._idle: list[Helper] = []
        self._all: list[Helper] = []
        self._failed = False

    def hash(self, requests: list[Request]) -> list[Outcome] | None:
        """The outcome of each request, or None when no helper can take them."""
        helper = self._take()
        if helper is None:
            return None
        try:
            outcomes = helper.hash(requests)
        except HelperGone:
            with self._lock:
                self._failed = True
            return None
        with self._lock:
            self._idle.append(helper)
        return outcomes

    def close(self) -> None:
        with self._lock:
            helpers, self._all, self._idle = self._all, [], []
        for helper in helpers:
            helper.close()

    def _take(self) -> Helper | None:
        with self._lock:
            if self._failed:
                return None
            if self._idle:
                return self._idle.pop()
            if len(self._all) >= self.most:
                return None
            try:
                if not sys.executable:  # None or "" when Python cannot tell (embedded)
                    raise OSError("no Python executable to start a helper with")
                helper = Helper()
            except OSError:
                self._failed = True
                return None
            self._all.append(helper)
            return helper


def _outcomes(answer: object, count: int) -> list[Outcome]:
    """A helper's answer as outcomes; ValueError unless it is one outcome per request."""
    if type(answer) is not list or len(answer) != count:
        raise ValueError("answered the wrong number of files")
    outcomes: list[Outcome] = []
    for row in answer:
        if type(row) is not tuple:
            raise ValueError("answered something that is not a file's outcome")
        if len(row) == 5 and type(row[0]) is str and all(type(v) is int for v in row[1:]):
            outcomes.append((FileHash(*row), None, None))
        elif len(row) == 3 and row[0] is None and type(row[1]) is type(row[2]) is str:
            outcomes.append((None, row[1], row[2]))
        else:
            raise ValueError("answered something that is not a file's outcome")
    return outcomes


def _send(pipe: BinaryIO, data: bytes) -> None:
    pipe.write(_FRAME.pack(_TAG, len(data)))
    pipe.write(data)
    pipe.flush()


def _receive(pipe: BinaryIO) -> bytes:
    head = pipe.read(_FRAME.size)
    if len(head) < _FRAME.size:
        raise EOFError("the helper's pipe closed")
    tag, size = _FRAME.unpack(head)
    if tag != _TAG or size > _MOST_FRAME:
        raise ValueError("the helper's pipe carries something else than its answers")
    data = pipe.read(size)
    if len(data) < size:
        raise EOFError("the helper's pipe closed mid-answer")
    return data


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """The helper's loop: answer each chunk until the scan closes the pipe."""
    buffer = aligned_buffer()
    while True:
        try:
            chunk = marshal.loads(_receive(requests))
        except EOFError:
            return
        answer = []
        for path, size, mtime_ns in chunk:
            found, problem, message = hash_one(path, buffer, (size, mtime_ns))
            answer.append(tuple(found) if found is not None else (None, problem, message))
        _send(answers, marshal.dumps(answer))


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the scan's to handle
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer)
    except BrokenPipeError:  # the scan went away while we answered
        os._exit(0)


if __name__ == "__main__":
    main()
