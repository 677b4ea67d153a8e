"""Media probe: what a video file is, and whether it is whole.

`probe(path)` reads headers with PyAV (libavformat in-process, never an ffprobe
subprocess) and demuxes packets, never decoding frames. A file cut short gives
``ok=False`` and one human line in ``error``; `probe` never raises for bad media.

Frame count and integrity:

- Stored count (MP4/MOV sample tables, AVI headers): that is the count. Checks:
  the top-level structure (MP4 boxes, RIFF size) and every stream's sample index
  end inside the file, and the last ~20 video packets, demuxed after a seek,
  reach the declared duration with no demux error or corrupt packet.
- Otherwise (Matroska, WebM, MPEG-TS, ...) every packet is demuxed and video
  packets counted, like ``ffprobe -count_packets``; the last packet of any
  stream must reach the declared duration, and a Matroska Segment must not
  declare more bytes than the file has.

"Reach" is within two frame durations. Formats whose duration is an estimate
(raw elementary streams, MPEG-TS/PS) get no end check.

VFR rule: sort video timestamps (the sample index when it lists every frame,
first and last 1024 entries; else the pts of the first 1024 demuxed packets
minus the last 16, which B-frame reordering may leave incomplete); the stream
is VFR when two intervals between consecutive frames differ by more than one
time-base tick (one tick is rounding). ``None`` with under two intervals.

Rotation is ffprobe's display-matrix ``rotation`` normalised to 0..359 (-90 is
270), read for MP4/MOV from the video track's ``tkhd`` matrix (``mvhd``'s is
ignored: the identity in practice); else the legacy ``rotate`` tag. PyAV 18
can write a display matrix but not read one without decoding a frame.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

import av
from av.container import InputContainer
from av.stream import Discard, Disposition, Stream
from av.video.stream import VideoStream

from sneakernet.catalog.hashing import clamp_mtime_ns
from sneakernet.catalog.media import AudioStream, MediaInfo

# Formats whose duration comes from a header, so "ends early" means something.
_HEADER_DURATION = frozenset({"mov", "matroska", "avi", "asf", "nut", "mxf", "flv", "ogg", "ivf"})
_MOV_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot", b"styp"})
_MAX_BOXES = 20000  # top-level MP4 boxes walked (fragmented MP4: two per fragment)
_SAMPLE = 1024  # timestamps looked at by the VFR rule, per run
_REORDER = 16  # most frames a decoder may reorder (the H.264/HEVC limit)
# Never through a symlink, never blocked by a FIFO swapped in (O_NONBLOCK; a regular
# file reads the same with it).
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_MEDIA_ERRORS = (av.FFmpegError, OSError, EOFError, ValueError, UnicodeError, OverflowError)


@dataclass(slots=True)
class _Scan:
    """What demuxing a run of packets showed."""

    video_packets: int = 0
    video_end: float | None = None  # seconds: max pts+duration of the video packets
    any_end: float | None = None  # the same over every demuxed stream
    pts: list[int] = field(default_factory=list)  # video pts, the first _SAMPLE
    pts_cut: bool = False  # more pts followed: the last few sorted ones may have gaps
    error: str | None = None


class NotTheHashedFile(Exception):
    """The file is not (or no longer) the bytes that were hashed: its probe says nothing
    about that content, so nothing may be stored under that content's hash."""


# size, mtime_ns, inode, device: what the scan's "unchanged" rule compares
Identity = tuple[int, int, int, int]


def probe(path: str | bytes | os.PathLike, expect: Identity | None = None) -> MediaInfo:
    """Describe the video file at `path`. Never raises for bad media: see `MediaInfo.ok`.

    `path` must be a regular file itself: a symlink is not followed, and a FIFO or
    device (swapped in after the file was hashed) is refused without waiting on it.

    `expect` is the identity the file had when it was hashed. With it, a file that
    cannot be opened, or does not have that identity both before and after it is
    read, raises NotTheHashedFile: that is a race with a writer, not a fact about
    the hashed content, which the catalog would otherwise keep under its hash.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if expect is not None:
            raise NotTheHashedFile(f"cannot open: {_message(exc)}") from exc
        return MediaInfo(ok=False, error=f"cannot open: {_message(exc)}")
    try:
        st = os.fstat(fd)
        if expect is not None and _identity(st) != expect:
            raise NotTheHashedFile("changed since it was hashed")
        if not stat.S_ISREG(st.st_mode):
            return MediaInfo(ok=False, error="cannot open: not a regular file")
        try:
            info = _probe_file(fd, path, st.st_size)
        except _MEDIA_ERRORS as exc:
            info = MediaInfo(ok=False, error=f"cannot open: {_message(exc)}")
        if expect is not None and _identity(os.fstat(fd)) != expect:
            raise NotTheHashedFile("changed while its video metadata was read")
        return info
    finally:
        os.close(fd)


def _identity(st: os.stat_result) -> Identity:
    # the catalog keeps an mtime past 2262 as the end of its range (hashing.clamp_mtime_ns)
    return st.st_size, clamp_mtime_ns(st.st_mtime_ns), st.st_ino, st.st_dev


def _probe_file(fd: int, path: str | bytes | os.PathLike, size: int) -> MediaInfo:
    # PyAV os.fsencode()s the name back, so an undecodable (surrogate-escaped) name
    # survives; "file:" keeps names like "10:30.mp4" or "concat:x" from being URLs.
    with av.open("file:" + _same_file(fd, path), metadata_errors="ignore") as container:
        info = _probe_container(container, size)
    with open(fd, "rb", buffering=0, closefd=False) as fh:
        declared, rotation = _layout(fh, size)
    if rotation is not None:
        info = dataclasses.replace(info, rotation=rotation)
    if info.ok and declared is not None and declared > size:
        error = f"ends early: file has {size} bytes, its header declares {declared}"
        info = dataclasses.replace(info, ok=False, error=error)
    return info


def _same_file(fd: int, path: str | bytes | os.PathLike) -> str:
    """A name libavformat can open that is the file `fd` has open, whatever `path` is now.

    On Linux /proc/self/fd/N reopens that very file; elsewhere the path is all there is
    (checked a moment ago, so only a swap in that moment gets through).
    """
    by_fd = f"/proc/self/fd/{fd}"
    return by_fd if os.path.exists(by_fd) else os.fsdecode(path)


def _message(exc: BaseException) -> str:
    """The error's own words, without the file name (OSError and av.FFmpegError have them)."""
    return str(getattr(exc, "strerror", None) or exc) or type(exc).__name__


def _probe_container(container: InputContainer, size: int) -> MediaInfo:
    fmt = container.format.name.split(",")[0] if container.format else None
    audio = tuple(
        AudioStream(s.index, _codec_name(s), _ctx_int(s, "channels"), _ctx_int(s, "sample_rate"))
        for s in container.streams.audio
    )
    creation = container.metadata.get("creation_time")
    pictures = Disposition.attached_pic  # cover art, not video
    video = next((s for s in container.streams.video if not s.disposition & pictures), None)
    if video is None:
        return MediaInfo(False, "no video stream", fmt, audio=audio, creation_time=creation)

    ctx = video.codec_context
    pix_fmt = ctx.pix_fmt if ctx else None
    fps = float(video.average_rate) if video.average_rate else None
    tb = video.time_base
    stream_duration = bool(video.duration and tb)
    if stream_duration:
        duration: float | None = float(video.duration * tb)
        end = float(((video.start_time or 0) + video.duration) * tb)
    else:  # the container's duration spans every stream
        duration = container.duration / av.time_base if container.duration else None
        end = duration and ((container.start_time or 0) / av.time_base + duration)
    if fmt not in _HEADER_DURATION:
        end = None  # an estimate (raw streams, MPEG-TS/PS): nothing to hold packets to
    frame_time = 1.0 / fps if fps else 0.05

    frames = video.frames or None
    if frames:  # stored count: check the index and the last packets only
        error, reached = _check_index(container, size), None
        if error is None and end:
            tail = _scan_tail(container, video, end - (_REORDER + 3) * frame_time)
            error, reached = tail.error, tail.video_end
        vfr = _index_vfr(video, frames)
    else:  # count every packet, like ffprobe -count_packets
        scan = _scan(container, list(container.streams))
        frames, error = scan.video_packets, scan.error
        reached = scan.video_end if stream_duration else scan.any_end
        vfr = _is_vfr(sorted(set(scan.pts))[: -_REORDER if scan.pts_cut else None])
        if frames == 0 and error is None:
            error = "no video packets"
    if error is None and end and (reached is None or reached < end - 2 * frame_time):
        error = f"ends early: packets stop at {reached or 0.0:.2f} s of {end:.2f} s"

    return MediaInfo(
        ok=error is None,
        error=error,
        container=fmt,
        codec=_codec_name(video),
        profile=video.profile,
        width=_ctx_int(video, "width"),
        height=_ctx_int(video, "height"),
        pix_fmt=pix_fmt,
        bit_depth=_bit_depth(pix_fmt),
        fps=fps,
        vfr=vfr,
        duration=duration,
        frames=frames,
        bit_rate=(ctx.bit_rate if ctx else 0) or container.bit_rate or None,
        rotation=_rotate_tag(video),
        creation_time=video.metadata.get("creation_time") or creation,
        audio=audio,
    )


def _codec_name(stream: Stream) -> str | None:
    """The codec as ffprobe's codec_name says it (h264, not a decoder's name)."""
    return stream.codec_context.codec.canonical_name if stream.codec_context else None


def _ctx_int(stream: Stream, name: str) -> int | None:
    return (getattr(stream.codec_context, name) or None) if stream.codec_context else None


def _check_index(container: InputContainer, size: int) -> str | None:
    """The last sample of each indexed stream must lie inside the file."""
    for stream in container.streams:
        n = len(stream.index_entries)
        last = stream.index_entries[n - 1] if n else None
        if last is not None and last.pos >= 0 and last.size > 0 and last.pos + last.size > size:
            return f"ends early: file has {size} bytes, its index needs {last.pos + last.size}"
    return None


def _scan_tail(container: InputContainer, video: VideoStream, at: float) -> _Scan:
    """Demux the video packets from about `at` seconds to the end.

    Demuxing needs no keyframe, so seek to any frame: only the last few packets are read.
    If the seek fails (an AVI without index), scan on from wherever the demuxer is.
    """
    with contextlib.suppress(*_MEDIA_ERRORS):
        target = max(0, int(at / video.time_base))
        container.seek(target, stream=video, backward=True, any_frame=True)
    return _scan(container, [video])


def _scan(container: InputContainer, streams: list[Stream]) -> _Scan:
    """Demux `streams` (the others discarded) to the end."""
    wanted = {s.index for s in streams}
    for s in container.streams:
        s.discard = Discard.default if s.index in wanted else Discard.all
    scan = _Scan()
    at = 0.0
    try:
        for packet in container.demux(streams):
            if packet.size == 0:  # PyAV's end-of-stream flush packets
                continue
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is not None and packet.time_base:
                at = float((ts + (packet.duration or 0)) * packet.time_base)
                scan.any_end = at if scan.any_end is None else max(scan.any_end, at)
            if packet.is_corrupt:
                scan.error = f"corrupt packet at {at:.2f} s (stream {packet.stream_index})"
                break
            if packet.stream.type != "video":
                continue
            scan.video_packets += 1
            if ts is not None and packet.time_base:
                scan.video_end = at if scan.video_end is None else max(scan.video_end, at)
            if packet.pts is not None and len(scan.pts) < _SAMPLE:
                scan.pts.append(packet.pts)
            elif packet.pts is not None:
                scan.pts_cut = True
    except _MEDIA_ERRORS as exc:
        scan.error = f"demux error at {at:.2f} s: {_message(exc)}"
    return scan


def _index_vfr(video: VideoStream, frames: int) -> bool | None:
    """The VFR rule on the stored sample times (MP4 stts, AVI index): no I/O at all."""
    index, n = video.index_entries, len(video.index_entries)
    if n != frames:  # a keyframe-only index says nothing about frame timing
        return None
    runs = (index[:_SAMPLE], index[max(0, n - _SAMPLE) :])
    return _is_vfr(*([e.timestamp for e in run] for run in runs))


def _is_vfr(*runs: Sequence[int]) -> bool | None:
    """True when intervals between consecutive sorted timestamps differ by over one tick."""
    deltas = [b - a for run in runs for a, b in itertools.pairwise(run)]
    return max(deltas) - min(deltas) > 1 if len(deltas) >= 2 else None


def _bit_depth(pix_fmt: str | None) -> int | None:
    try:
        components = av.VideoFormat(pix_fmt).components if pix_fmt else ()
    except (ValueError, av.FFmpegError):
        return None
    return max((c.bits for c in components), default=0) or None


def _rotate_tag(video: VideoStream) -> int:
    """The legacy 'rotate' tag (older muxers), 0 if none."""
    try:
        return round(float(video.metadata.get("rotate") or 0)) % 360
    except ValueError:
        return 0


def _layout(fh: BinaryIO, size: int) -> tuple[int | None, int | None]:
    """(file size the top-level structure declares, MP4/MOV display rotation)."""
    head = fh.read(128)
    if head[:4] == b"RIFF" and len(head) >= 8:  # AVI
        return 8 + int.from_bytes(head[4:8], "little"), None
    if head[4:8] in _MOV_BOXES:
        end, rotation = 0, None
        for n, (kind, body, end) in enumerate(_boxes(fh, 0, size)):
            if n > _MAX_BOXES:
                return None, rotation
            if kind == b"moov" and rotation is None:
                rotation = _moov_rotation(fh, body, min(end, size))
        return end, rotation
    if head[:4] != b"\x1a\x45\xdf\xa3":  # not an EBML header (Matroska) either
        return None, None
    ebml = _vint(head, 4)
    if ebml is None or head[sum(ebml) : sum(ebml) + 4] != b"\x18\x53\x80\x67":  # Segment
        return None, None
    segment = _vint(head, sum(ebml) + 4)
    return (None if segment is None else sum(segment)), None


def _boxes(fh: BinaryIO, start: int, stop: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, body offset, end offset) of the MP4 boxes from `start`, hopping headers."""
    at = start
    while at + 8 <= stop:
        fh.seek(at)
        header = fh.read(16)
        length, kind, body = int.from_bytes(header[:4], "big"), header[4:8], at + 8
        if length == 1:
            length, body = int.from_bytes(header[8:16], "big"), at + 16
        elif length == 0:  # "to the end of the file"
            length = stop - at
        if length < body - at:
            return  # not boxes after all
        yield kind, body, at + length
        at += length


def _moov_rotation(fh: BinaryIO, start: int, stop: int) -> int | None:
    """Rotation of the first track with a picture size, from its tkhd matrix."""
    for kind, body, end in _boxes(fh, start, stop):
        tkhd = kind == b"trak" and next((b for k, b, _ in _boxes(fh, body, end) if k == b"tkhd"), 0)
        if not tkhd:
            continue
        fh.seek(tkhd)
        data = fh.read(96)
        at = 52 if data[:1] == b"\x01" else 40  # matrix offset in a version 1 / 0 tkhd
        if len(data) < at + 44 or not (
            any(data[at + 36 : at + 40]) and any(data[at + 40 : at + 44])
        ):
            continue  # no width and height: not a picture track
        a, b, _, c, d = (
            int.from_bytes(data[i : i + 4], "big", signed=True) for i in range(at, at + 20, 4)
        )
        sx, sy = math.hypot(a, c), math.hypot(b, d)
        # av_display_rotation_get(), which ffprobe prints as rotation=
        return round(-math.degrees(math.atan2(b / sy, a / sx))) % 360 if sx and sy else None
    return None


def _vint(head: bytes, at: int) -> tuple[int, int] | None:
    """EBML variable-size integer at `at` as (value, end); None if cut or "unknown size"."""
    if at >= len(head) or head[at] == 0:
        return None
    length = 9 - head[at].bit_length()
    mask = (1 << (7 * length)) - 1
    value = int.from_bytes(head[at : at + length], "big") & mask
    return None if at + length > len(head) or value == mask else (value, at + length)
