"""A read-only FUSE passthrough that waits on every request: a NAS on this machine.

    python bench/_slowfs.py SOURCE MOUNTPOINT [--delay-ms 0.5]

Each metadata request (lookup/getattr, readdir, open, release) and each read
waits `--delay-ms` before it is answered, the way a request to a file server
waits a network round trip. The wait is a sleep, not work, so it leaves the CPU
free, as a real network wait does. The kernel's attribute and name caches are
off (attr_timeout=0, entry_timeout=0) so every stat reaches the "server", like
an NFS mount after its cache has expired (the state of a monthly rescan).

Used by bench/scan_nas.py. Needs /dev/fuse, the right to mount (root here) and
the `fusepy` package, which the bench installs; never a sneakernet dependency.
"""

from __future__ import annotations

import argparse
import errno
import os
import time

import fuse  # fusepy


class SlowPassthrough(fuse.Operations):
    def __init__(self, source: str, delay_s: float) -> None:
        self.source = source
        self.delay_s = delay_s

    def _real(self, path: str) -> str:
        return self.source + path

    def _wait(self) -> None:
        time.sleep(self.delay_s)  # releases the GIL: requests in flight overlap

    def getattr(self, path: str, fh: int | None = None) -> dict:
        self._wait()
        try:
            st = os.lstat(self._real(path))
        except OSError as exc:
            raise fuse.FuseOSError(exc.errno or errno.EIO) from exc
        keys = ("st_mode", "st_size", "st_uid", "st_gid", "st_nlink",
                "st_atime", "st_mtime", "st_ctime", "st_ino")
        attrs = {key: getattr(st, key) for key in keys}
        attrs["st_mtime"] = st.st_mtime_ns / 1e9
        return attrs

    def readdir(self, path: str, fh: int) -> list[str]:
        self._wait()
        return [".", "..", *os.listdir(self._real(path))]

    def readlink(self, path: str) -> str:
        self._wait()
        return os.readlink(self._real(path))

    def open(self, path: str, flags: int) -> int:
        self._wait()
        return os.open(self._real(path), os.O_RDONLY)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        self._wait()
        return os.pread(fh, size, offset)

    def release(self, path: str, fh: int) -> int:
        os.close(fh)
        return 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source")
    p.add_argument("mountpoint")
    p.add_argument("--delay-ms", type=float, default=0.5)
    args = p.parse_args()
    fuse.FUSE(
        SlowPassthrough(os.path.realpath(args.source), args.delay_ms / 1000),
        args.mountpoint,
        foreground=True,
        ro=True,
        nothreads=False,
        attr_timeout=0,
        entry_timeout=0,
        negative_timeout=0,
        max_read=1 << 20,
    )


if __name__ == "__main__":
    main()
