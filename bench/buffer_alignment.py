"""Why every I/O buffer is page-aligned: page-cache reads into buffers at different offsets.

    python bench/buffer_alignment.py [--size-mib 512] [--runs 3] [--json]

One random file, warm in page cache, read with os.preadv into a 1 MiB buffer
and hashed (XXH3-128), one thread, the buffer starting at page offsets 0, 16,
64 and 2048 of anonymous mmap memory, and into a plain bytearray (where malloc
puts it). No bar: it shows what `sneakernet.catalog.hashing.aligned_buffer`
is for. On the AMD EPYC these figures were taken on, offsets 8 and 16 (malloc
places a big bytearray at 16) read at a third of the speed of 0 and of 32 to
4080: the copy's source, a page-cache page, starts on a page, and the two
addresses alias in their low 12 bits.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c

BUFFER = 1 << 20


def main() -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--size-mib", type=int, default=512)
    p.add_argument("--offsets", default="0,16,64,2048",
                   help="page offsets to try, comma-separated [default: 0,16,64,2048]")
    args = p.parse_args()
    import xxhash

    rep = c.Report("buffer_alignment: one file from page cache into a 1 MiB buffer, 1 thread")
    with c.work_dir(args, "align") as work:
        (path,) = c.make_random_files(work / "file", 1, args.size_mib * c.MiB)
        size = path.stat().st_size
        rep.info["bytes"] = size

        def reader(view: memoryview):
            def read() -> None:
                fd = os.open(path, os.O_RDONLY)
                try:
                    hasher, offset = xxhash.xxh3_128(), 0
                    while offset < size:
                        n = os.preadv(fd, [view], offset)
                        hasher.update(view[:n])
                        offset += n
                finally:
                    os.close(fd)

            return read

        warm = lambda: c.prewarm([path])  # noqa: E731
        for shift in (int(x) for x in args.offsets.split(",")):
            memory = mmap.mmap(-1, BUFFER + 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            view = memoryview(memory)[shift : shift + BUFFER]
            seconds, _ = c.best_of(reader(view), args.runs, setup=warm, name=f"offset {shift}")
            rep.row(f"mmap buffer at page offset {shift}", seconds, GB_s=c.gbps(size, seconds))
            view.release()
            memory.close()
        plain = bytearray(BUFFER)
        where = ctypes.addressof(ctypes.c_char.from_buffer(plain)) % 4096
        seconds, _ = c.best_of(reader(memoryview(plain)), args.runs, setup=warm, name="bytearray")
        rep.row(f"bytearray (malloc, page offset {where})", seconds, GB_s=c.gbps(size, seconds))
        cat_s, _ = c.time_cmd(f"cat {c.q(path)} > /dev/null", args.runs, shell=True,
                              setup=warm, name="cat")
        rep.row("cat > /dev/null (info)", cat_s, GB_s=c.gbps(size, cat_s))
    rep.print(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
