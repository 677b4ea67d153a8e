"""Media probe: what a video file is, and whether it is whole.

`probe(path)` reads a file's headers with PyAV (libavformat in-process, no
ffprobe subprocess) and demuxes packets, never decoding frames, to answer
two questions cheaply:

- *what is it*: container, codec, size, pixel format, frame rate, duration,
  exact frame count, bit rate, rotation, creation time, audio streams;
- *is it whole*: a file cut short (a copy that stopped, a drive pulled) gives
  ``ok=False`` with one human line in ``error``.

Frame count and integrity:

- When the container stores a frame count (MP4/MOV sample tables, AVI
  headers), that is the count. Integrity is then checked without reading the
  whole file: every stream's sample index must end inside the file, and the
  packets demuxed from the last second or so (after a seek) must reach the
  declared duration, with no demux error or corrupt packet.
- Otherwise (Matroska, WebM, MPEG-TS, ...) every packet is demuxed, like
  ``ffprobe -count_packets``: video packets are counted and the last packet of
  any stream must reach the declared container duration.

"Reach" means within two frame durations. Formats whose duration is only an
estimate (raw elementary streams, MPEG-TS/PS) get no end check.

VFR rule: the presentation timestamps of the sampled video packets (the first
1024 when everything is demuxed; the first and last few dozen otherwise) are
sorted, and the stream is variable frame rate when two intervals between
consecutive frames differ by more than one time-base tick (one tick of
spread is just rounding). ``None`` when fewer than three timestamps are known.

Rotation is the display-matrix angle as ffprobe reports it (``rotation=-90``),
normalised to 0..359 (so -90 becomes 270); else the legacy ``rotate`` tag.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import av
import av.logging

PROBE_VERSION: int = 1  # bump when probe output semantics change

# fmt: off
VIDEO_EXTENSIONS: frozenset[str] = frozenset({
    ".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".mxf", ".ts", ".m2ts", ".mts",
    ".m2t", ".tod", ".mpg", ".mpeg", ".m1v", ".m2v", ".vob", ".flv", ".f4v", ".wmv", ".asf",
    ".3gp", ".3g2", ".ogv", ".ogm", ".y4m", ".dv", ".nut", ".h264", ".264", ".avc", ".h265",
    ".265", ".hevc", ".ivf", ".mjpeg", ".mjpg", ".mj2", ".rm", ".rmvb", ".divx", ".xvid",
    ".mod", ".dav", ".obu", ".vp8", ".vp9", ".av1", ".wtv", ".dvr-ms", ".gxf", ".lrv", ".insv",
})
# fmt: on

# Formats whose declared duration comes from a header, so "ends early" is meaningful.
_HEADER_DURATION_FORMATS = frozenset(
    {"mov", "matroska", "avi", "asf", "nut", "mxf", "flv", "ogg", "ivf", "gxf", "wtv"}
)
_SAMPLE = 1024  # video timestamps kept for the VFR rule when demuxing everything
_HEAD = 48  # packets read from the start when the frame count is stored
_REORDER = 16  # most frames a decoder may reorder (H.264/HEVC limit)
_MEDIA_ERRORS = (av.FFmpegError, OSError, EOFError, ValueError, UnicodeError, OverflowError)
_ROTATION_RE = re.compile(r"display ?matrix: rotation of (-?[\d.]+) degrees", re.IGNORECASE)
_STREAM_RE = re.compile(r"Stream #\d+:(\d+)")
_LOG_LOCK = threading.Lock()


def is_video_name(name: str) -> bool:
    """True when `name` ends with a known video extension (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True, slots=True)
class AudioStream:
    index: int
    codec: str | None
    channels: int | None
    sample_rate: int | None


@dataclass(frozen=True, slots=True)
class MediaInfo:
    ok: bool
    error: str | None = None
    container: str | None = None
    codec: str | None = None
    profile: str | None = None
    width: int | None = None
    height: int | None = None
    pix_fmt: str | None = None
    bit_depth: int | None = None
    fps: float | None = None
    vfr: bool | None = None
    duration: float | None = None
    frames: int | None = None
    bit_rate: int | None = None
    rotation: int | None = None
    creation_time: str | None = None
    audio: tuple[AudioStream, ...] = field(default_factory=tuple)


@dataclass(slots=True)
class _Scan:
    """What demuxing a run of packets showed."""

    video_packets: int = 0
    video_end: float | None = None  # seconds: max pts+duration of video packets
    any_end: float | None = None  # same over all demuxed streams
    pts: list[int] = field(default_factory=list)  # video pts, capped at _SAMPLE
    pts_cut: bool = False  # pts stopped before the end of the run (later ones may be missing)
    error: str | None = None


def probe(path: str | bytes | os.PathLike) -> MediaInfo:
    """Describe the video file at `path`. Never raises for bad media: see `MediaInfo.ok`."""
    try:
        size = os.stat(path).st_size
        with _open(path) as container:
            return _probe_container(container, size)
    except _MEDIA_ERRORS as exc:
        return MediaInfo(ok=False, error=f"cannot open: {_message(exc)}")


@contextmanager
def _open(path: str | bytes | os.PathLike) -> Iterator[av.container.InputContainer]:
    name = os.fsdecode(path)  # PyAV os.fsencode()s it back, so undecodable bytes survive
    try:
        # "file:" keeps names like "10:30.mp4" or "concat:x" from being read as URLs.
        container = av.open("file:" + name, metadata_errors="ignore")
        fh = None
    except UnicodeError:
        fh = open(path, "rb")  # noqa: SIM115 - closed below, after the container
        try:
            container = av.open(fh, metadata_errors="ignore")
        except BaseException:
            fh.close()
            raise
    try:
        yield container
    finally:
        container.close()
        if fh is not None:
            fh.close()


def _message(exc: BaseException) -> str:
    if isinstance(exc, av.FFmpegError) and exc.strerror:
        return str(exc.strerror)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _probe_container(container: av.container.InputContainer, size: int) -> MediaInfo:
    fmt = container.format.name.split(",")[0] if container.format else None
    audio = tuple(
        AudioStream(
            index=s.index,
            codec=s.name,
            channels=(s.codec_context.channels or None) if s.codec_context else None,
            sample_rate=(s.codec_context.sample_rate or None) if s.codec_context else None,
        )
        for s in container.streams.audio
    )
    pictures = av.stream.Disposition.attached_pic  # cover art, not video
    video = next((s for s in container.streams.video if not s.disposition & pictures), None)
    creation = container.metadata.get("creation_time")
    if video is None:
        return MediaInfo(
            ok=False, error="no video stream", container=fmt, audio=audio, creation_time=creation
        )

    ctx = video.codec_context
    pix_fmt = ctx.pix_fmt if ctx else None
    fps = float(video.average_rate) if video.average_rate else None
    tb = video.time_base
    duration = None
    if video.duration and tb:
        duration = float(video.duration * tb)
    elif container.duration:
        duration = container.duration / av.time_base
    bit_rate = (ctx.bit_rate if ctx else 0) or container.bit_rate or None

    # Declared end (seconds): the video stream's own, else the container's (all streams).
    end: float | None = None
    video_only = bool(video.duration and tb)
    if fmt not in _HEADER_DURATION_FORMATS:
        pass  # duration is an estimate (raw streams, MPEG-TS/PS): nothing to hold it to
    elif video_only:
        end = float(((video.start_time or 0) + video.duration) * tb)
    elif container.duration:
        end = ((container.start_time or 0) + container.duration) / av.time_base
    slack = 2.0 / fps if fps else 0.1

    error = None
    frames = video.frames or None
    if frames:
        error = _check_index(container, size)
        head = _scan(container, [video], limit=_HEAD)
        error = error or head.error
        tail = _Scan()
        if error is None and end is not None:
            tail = _scan_tail(container, video, end - max(1.0, 3 * slack))
            error = tail.error
        reached = tail.video_end
        pts_runs = [head, tail]
    else:
        scan = _scan(container, list(container.streams), limit=None)
        frames, error = scan.video_packets, scan.error
        reached = scan.video_end if video_only else scan.any_end
        pts_runs = [scan]
        if frames == 0 and error is None:
            error = "no video packets"
    if error is None and end is not None and (reached is None or reached < end - slack):
        error = f"ends early: packets stop at {reached or 0.0:.2f} s of {end:.2f} s"

    return MediaInfo(
        ok=error is None,
        error=error,
        container=fmt,
        codec=video.name,
        profile=video.profile,
        width=(ctx.width or None) if ctx else None,
        height=(ctx.height or None) if ctx else None,
        pix_fmt=pix_fmt,
        bit_depth=_bit_depth(pix_fmt),
        fps=fps,
        vfr=_is_vfr(pts_runs),
        duration=duration,
        frames=frames,
        bit_rate=bit_rate,
        rotation=_rotation(container, video),
        creation_time=video.metadata.get("creation_time") or creation,
        audio=audio,
    )


def _check_index(container: av.container.InputContainer, size: int) -> str | None:
    """The last sample of each indexed stream must lie inside the file."""
    for stream in container.streams:
        entries = stream.index_entries
        n = len(entries)
        if n == 0:
            continue
        last = entries[n - 1]
        if last.pos >= 0 and last.size > 0 and last.pos + last.size > size:
            return f"ends early: file has {size} bytes, its index needs {last.pos + last.size}"
    return None


def _scan_tail(
    container: av.container.InputContainer, video: av.video.stream.VideoStream, at: float
) -> _Scan:
    """Demux the video packets from a keyframe before `at` seconds to the end."""
    try:
        container.seek(max(0, int(at / video.time_base)), stream=video, backward=True)
    except _MEDIA_ERRORS as exc:
        return _Scan(error=f"cannot seek: {_message(exc)}")
    return _scan(container, [video], limit=None)


def _scan(container: av.container.InputContainer, streams: list, *, limit: int | None) -> _Scan:
    """Demux `streams` (others discarded) until EOF or `limit` video packets."""
    wanted = {s.index for s in streams}
    for s in container.streams:
        s.discard = av.stream.Discard.default if s.index in wanted else av.stream.Discard.all
    scan = _Scan()
    at = 0.0
    try:
        for packet in container.demux(streams):
            if packet.size == 0:  # PyAV's end-of-stream flush packets
                continue
            tb = packet.time_base
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is not None and tb:
                at = float((ts + (packet.duration or 0)) * tb)
                scan.any_end = at if scan.any_end is None else max(scan.any_end, at)
            if packet.is_corrupt:
                scan.error = f"corrupt packet at {at:.2f} s (stream {packet.stream_index})"
                break
            if packet.stream.type == "video":
                scan.video_packets += 1
                if ts is not None and tb:
                    scan.video_end = at if scan.video_end is None else max(scan.video_end, at)
                if packet.pts is not None:
                    if len(scan.pts) < _SAMPLE:
                        scan.pts.append(packet.pts)
                    else:
                        scan.pts_cut = True
                if limit is not None and scan.video_packets >= limit:
                    scan.pts_cut = True
                    break
    except _MEDIA_ERRORS as exc:
        scan.error = f"demux error at {at:.2f} s: {_message(exc)}"
    return scan


def _is_vfr(runs: list[_Scan]) -> bool | None:
    deltas: list[int] = []
    for run in runs:
        ordered = sorted(set(run.pts))
        if run.pts_cut:  # frames decoded later may still fill gaps among the last few
            ordered = ordered[:-_REORDER]
        deltas += [b - a for a, b in itertools.pairwise(ordered)]
    if len(deltas) < 2:
        return None
    return max(deltas) - min(deltas) > 1


def _bit_depth(pix_fmt: str | None) -> int | None:
    if not pix_fmt:
        return None
    try:
        return max(c.bits for c in av.VideoFormat(pix_fmt).components) or None
    except (ValueError, av.FFmpegError):
        return None


def _rotation(container: av.container.InputContainer, video: av.video.stream.VideoStream) -> int:
    """Display-matrix rotation of `video`, read from libavformat's format dump.

    PyAV 18 can write a stream's display matrix but offers no reader short of
    decoding a frame, so we take the angle from av_dump_format's text. The dump
    is logged, so PyAV logging is switched on (under a lock) just for the call.
    """
    with _LOG_LOCK:
        before = av.logging.get_level()
        raise_level = before is None or before < av.logging.INFO
        if raise_level:
            av.logging.set_level(av.logging.INFO)
        try:
            dump = container.dumps_format()
        finally:
            if raise_level:
                av.logging.set_level(before)
    current = None
    for line in dump.splitlines():
        m = _STREAM_RE.search(line)
        if m:
            current = int(m.group(1))
            continue
        m = _ROTATION_RE.search(line)
        if m and current == video.index:
            return round(float(m.group(1))) % 360
    tag = video.metadata.get("rotate")
    try:
        return round(float(tag)) % 360 if tag else 0
    except ValueError:
        return 0
