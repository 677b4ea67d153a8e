"""Real sample clips encoded with PyAV, for `sneakernet demo` and the tests.

Every clip is a genuine encode by the ffmpeg bundled with PyAV: a moving
synthetic pattern (so different seeds give different bytes), optionally with a
sine-tone audio track. Clips are tiny (160x120, one second) so the whole
default dataset is written in well under a few seconds.
"""

from __future__ import annotations

import json
import math
import os
from array import array
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

__all__ = [
    "DEFAULT_CLIPS",
    "ClipSpec",
    "truncate_file",
    "write_clip",
    "write_sample_dataset",
]

_DEFAULT_PIX_FMT = {
    "libx264": "yuv420p",
    "libx265": "yuv420p",
    "libvpx-vp9": "yuv420p",
    "mpeg4": "yuv420p",
    "mjpeg": "yuvj420p",
    "ffv1": "yuv420p",
    "prores_ks": "yuv422p10le",
}

_CODEC_OPTIONS = {
    "libx264": {"preset": "ultrafast"},
    "libx265": {"preset": "ultrafast", "x265-params": "log-level=none"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"},
    "mpeg4": {"qscale": "4"},
}

_FORMATS = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
    ".avi": "avi",
    ".nut": "nut",
}

_AUDIO_CODEC = {"webm": "libopus", "avi": "pcm_s16le", "nut": "pcm_s16le"}  # else aac

_AUDIO_RATE = 48000


@dataclass(frozen=True)
class ClipSpec:
    """What to encode. The container comes from the extension of `name`."""

    name: str  # relative path to write, e.g. "cam1/clip_h264.mp4"
    codec: str  # libx264 | libx265 | libvpx-vp9 | mpeg4 | mjpeg | ffv1 | prores_ks
    width: int = 160
    height: int = 120
    fps: int = 25
    frames: int = 25
    pix_fmt: str | None = None  # None: a sensible default per codec
    audio: bool = False  # add a stereo 48 kHz tone (AAC; Opus in webm; PCM in avi)
    seed: int = 0  # content varies with the seed
    faststart: bool = False  # mp4/mov: moov atom at the front
    rotation: int = 0  # display-matrix rotation in degrees (mp4/mov)
    vfr: bool = False  # irregular frame timestamps (1 ms time base)
    bframes: int = 0  # B-frames between references (reordered packets), libx264/mpeg4


def _video_frame(spec: ClipSpec, i: int) -> av.VideoFrame:
    """A yuv420p frame: sliding luma ramps, seeded chroma and a moving white box.

    Pure Python (no numpy, which is not a dependency): planar rows are slices of a
    byte ramp, so a frame costs one slice per row.
    """
    frame = av.VideoFrame(spec.width, spec.height, "yuv420p")
    ramp = bytes(range(256)) * (spec.width // 256 + 2)
    box_x, box_y = (i * 5 + spec.seed * 13) % max(1, spec.width - 16), spec.height // 3
    for index, plane in enumerate(frame.planes):
        rows = []
        for y in range(plane.height):
            if index == 0:
                start = (spec.seed * 37 + i * 4 + 2 * y) % 256
            else:
                start = (spec.seed * (91 if index == 1 else 53) + 3 * y + i * index) % 256
            row = ramp[start : start + plane.width]
            if index == 0 and box_y <= y < box_y + 16:
                row = row[:box_x] + b"\xff" * len(row[box_x : box_x + 16]) + row[box_x + 16 :]
            rows.append(row + bytes(plane.line_size - plane.width))
        plane.update(b"".join(rows))
    return frame


def _vfr_pts(spec: ClipSpec) -> list[int]:
    """Millisecond timestamps with alternating short and long gaps."""
    step = 1000 / spec.fps
    pts, t = [], 0.0
    for i in range(spec.frames):
        pts.append(round(t))
        t += step * (0.5 if i % 3 == 0 else 1.5)
    return pts


def _encode_audio(
    out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, spec: ClipSpec
) -> None:
    """A stereo sine tone as long as the video; the encoder resamples s16 to its format."""
    total = round(spec.frames / spec.fps * _AUDIO_RATE)
    step = 2 * math.pi * (220.0 + 110.0 * (spec.seed % 5)) / _AUDIO_RATE
    for start in range(0, total, 1024):
        n = min(1024, total - start)
        tone = [round(9000 * math.sin(step * k)) for k in range(start, start + n)]
        pcm = array("h", [v for v in tone for _ in (0, 1)]).tobytes()  # interleaved L R
        frame = av.AudioFrame(format="s16", layout="stereo", samples=n)
        frame.planes[0].update(pcm + bytes(frame.planes[0].buffer_size - len(pcm)))
        frame.sample_rate = _AUDIO_RATE
        frame.pts = start
        frame.time_base = Fraction(1, _AUDIO_RATE)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def write_clip(path: Path, spec: ClipSpec) -> Path:
    """Encode `spec` to `path` (parents created) and return `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"no container known for extension {path.suffix!r}")
    container_options = {"movflags": "+faststart"} if spec.faststart else {}
    with av.open(str(path), "w", format=fmt, container_options=container_options) as out:
        opts = dict(_CODEC_OPTIONS.get(spec.codec, {}))
        stream = out.add_stream(spec.codec, rate=spec.fps, options=opts)
        stream.width = spec.width
        stream.height = spec.height
        stream.pix_fmt = spec.pix_fmt or _DEFAULT_PIX_FMT.get(spec.codec, "yuv420p")
        stream.thread_count = 1
        if spec.codec == "libvpx-vp9":
            stream.codec_context.bit_rate = 200_000
        if spec.bframes:
            stream.codec_context.max_b_frames = spec.bframes
        if spec.vfr:
            stream.codec_context.time_base = Fraction(1, 1000)
        if spec.rotation:
            stream.set_display_rotation(spec.rotation)
        astream = None
        if spec.audio:
            acodec = _AUDIO_CODEC.get(fmt, "aac")
            astream = out.add_stream(acodec, rate=_AUDIO_RATE, layout="stereo")
        vfr_pts = _vfr_pts(spec) if spec.vfr else None
        for i in range(spec.frames):
            frame = _video_frame(spec, i)
            if vfr_pts is not None:
                frame.pts = vfr_pts[i]
                frame.time_base = Fraction(1, 1000)
            else:
                frame.pts = i
                frame.time_base = Fraction(1, spec.fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if astream is not None:
            _encode_audio(out, astream, spec)
    return path


def truncate_file(path: Path, keep_fraction: float = 0.5) -> None:
    """Cut `path` in place to `keep_fraction` of its size (a broken copy for tests)."""
    if not 0.0 <= keep_fraction <= 1.0:
        raise ValueError("keep_fraction must be between 0 and 1")
    size = os.path.getsize(path)
    os.truncate(path, int(size * keep_fraction))


DEFAULT_CLIPS: tuple[ClipSpec, ...] = (
    ClipSpec("cam1/clip_h264.mp4", "libx264", audio=True, seed=1, faststart=True, bframes=2),
    ClipSpec("cam1/clip_hevc.mkv", "libx265", seed=2),
    ClipSpec("cam2/clip_vp9.webm", "libvpx-vp9", audio=True, seed=3),
    ClipSpec("cam2/clip_mpeg4.avi", "mpeg4", seed=4),
    ClipSpec("cam3/clip_mjpeg.mov", "mjpeg", seed=5),
    ClipSpec("cam3/clip_ffv1.mkv", "ffv1", seed=6, pix_fmt="yuv422p10le"),
    ClipSpec("cam3/clip_prores.mov", "prores_ks", seed=7),
)

_BROKEN = ClipSpec("broken/cut.mp4", "libx264", seed=99, faststart=True, frames=50)


def write_sample_dataset(
    root: Path, clips: tuple[ClipSpec, ...] = DEFAULT_CLIPS, *, broken: bool = True
) -> list[Path]:
    """Write `clips` under `root`, plus a truncated clip and a few non-video files.

    Returns every path written, in the order written.
    """
    root = Path(root)
    written = [write_clip(root / spec.name, spec) for spec in clips]
    if broken:
        cut = write_clip(root / _BROKEN.name, _BROKEN)
        truncate_file(cut, 0.5)
        written.append(cut)
    notes = root / "notes.txt"
    notes.parent.mkdir(parents=True, exist_ok=True)
    notes.write_text("Sample dataset written by sneakernet.catalog.samples.\n", encoding="utf-8")
    meta = root / "meta" / "shoot.json"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(
        json.dumps({"site": "demo", "clips": [c.name for c in clips]}, indent=2) + "\n",
        encoding="utf-8",
    )
    written += [notes, meta]
    return written
