"""What a media probe says, and which names are videos: no PyAV needed.

Kept apart from `probe` so that the modules which only name these (the scan's
planning, registration, watch) do not load PyAV and its codecs at start-up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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
    ok: bool  # False: broken (cannot open, no video stream, ends early, demux error)
    error: str | None = None  # one human line when not ok
    container: str | None = None  # first libavformat name: "mov", "matroska", "avi"
    codec: str | None = None  # as ffprobe's codec_name: h264, hevc, vp9, prores
    profile: str | None = None
    width: int | None = None
    height: int | None = None
    pix_fmt: str | None = None
    bit_depth: int | None = None  # bits per component, from the pixel format
    fps: float | None = None  # average frame rate (ffprobe avg_frame_rate)
    vfr: bool | None = None  # see the VFR rule above
    duration: float | None = None  # seconds: the video stream's, else the container's
    frames: int | None = None  # exact: stored count, else video packets demuxed
    bit_rate: int | None = None  # the video stream's, else the container's
    rotation: int | None = None  # degrees 0..359, 0 when none
    creation_time: str | None = None  # the creation_time tag (stream, else container)
    audio: tuple[AudioStream, ...] = ()
