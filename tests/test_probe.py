"""The media probe against ffprobe, on real clips encoded by PyAV, whole and broken."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import pytest

from sneakernet.catalog import media, probe, samples
from sneakernet.catalog.samples import ClipSpec

# Clips beyond the default dataset: reordered (B-frame) packets in containers that do
# and do not store a frame count, a rotated clip, and irregular timestamps.
EXTRA_CLIPS = (
    ClipSpec("extra/bframes_h264.mkv", "libx264", bframes=2, frames=60, audio=True, seed=11),
    ClipSpec("extra/bframes_hevc.mp4", "libx265", bframes=3, frames=60, seed=12),
    ClipSpec("extra/bframes_mpeg4.avi", "mpeg4", bframes=2, frames=40, seed=13),
    ClipSpec("extra/rotated.mp4", "libx264", rotation=90, faststart=True, seed=14),
    ClipSpec("extra/rotated.mov", "mjpeg", rotation=270, seed=15),
    ClipSpec("extra/vfr.mkv", "ffv1", vfr=True, seed=16),
    ClipSpec("extra/vfr.mp4", "libx264", vfr=True, seed=17),
)
ALL_CLIPS = samples.DEFAULT_CLIPS + EXTRA_CLIPS


def _ffprobe(path: str | bytes | os.PathLike) -> dict:
    exe = shutil.which("ffprobe")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("ffprobe is not installed (CI installs it)")
        pytest.skip("ffprobe is not installed")
    cmd = [exe, "-v", "error", "-count_packets", "-show_streams", "-show_format", "-of", "json"]
    out = subprocess.run([*cmd, os.fsencode(path)], capture_output=True, check=True)
    return json.loads(out.stdout)


def _ffprobe_rotation(stream: dict) -> int:
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return int(side["rotation"]) % 360
    return 0


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    samples.write_sample_dataset(root, ALL_CLIPS)
    return root


@pytest.mark.parametrize("spec", ALL_CLIPS, ids=lambda s: s.name)
def test_probe_matches_ffprobe(clip_dir: Path, spec: ClipSpec) -> None:
    path = clip_dir / spec.name
    info = probe.probe(path)
    assert info.ok, info.error
    assert info.error is None

    report = _ffprobe(path)
    video = next(s for s in report["streams"] if s["codec_type"] == "video")
    audio = [s for s in report["streams"] if s["codec_type"] == "audio"]
    fmt = report["format"]

    assert info.container == fmt["format_name"].split(",")[0]
    assert info.codec == video["codec_name"]
    assert info.profile == video.get("profile")
    assert (info.width, info.height) == (video["width"], video["height"])
    assert (info.width, info.height) == (spec.width, spec.height)
    assert info.pix_fmt == video["pix_fmt"]
    assert info.bit_depth == (10 if "10" in video["pix_fmt"] else 8)
    assert info.fps == pytest.approx(float(Fraction(video["avg_frame_rate"])))
    assert info.frames == int(video.get("nb_frames") or video["nb_read_packets"]) == spec.frames
    expected = float(video.get("duration") or fmt["duration"])
    assert info.duration == pytest.approx(expected, abs=1 / spec.fps)
    assert info.bit_rate and info.bit_rate > 0
    assert info.rotation == _ffprobe_rotation(video) == spec.rotation % 360
    assert info.vfr is spec.vfr
    assert [(a.index, a.codec, a.channels, a.sample_rate) for a in info.audio] == [
        (a["index"], a["codec_name"], a["channels"], int(a["sample_rate"])) for a in audio
    ]
    assert len(info.audio) == int(spec.audio)


def test_sample_dataset_layout(clip_dir: Path) -> None:
    videos = sorted(p for p in clip_dir.rglob("*") if p.is_file() and media.is_video_name(p.name))
    others = sorted(p for p in clip_dir.rglob("*") if p.is_file() and p not in videos)
    assert {p.suffix for p in others} == {".txt", ".json"}
    assert len(videos) == len(ALL_CLIPS) + 1  # plus broken/cut.mp4
    results = {p.relative_to(clip_dir).as_posix(): probe.probe(p) for p in videos}
    assert [name for name, info in results.items() if not info.ok] == ["broken/cut.mp4"]
    assert results["broken/cut.mp4"].error.startswith("ends early")


def test_probe_is_thread_safe(clip_dir: Path) -> None:
    paths = [clip_dir / spec.name for spec in ALL_CLIPS] * 4
    serial = [probe.probe(p) for p in paths]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(probe.probe, paths)) == serial


def _cut(src: Path, dst: Path, keep: float) -> Path:
    shutil.copyfile(src, dst)
    samples.truncate_file(dst, keep)
    return dst


BROKEN_CUTS = [
    ("cam1/clip_h264.mp4", 0.5),  # faststart mp4: header fine, data cut
    ("cam1/clip_h264.mp4", 0.97),  # faststart mp4: only the last frames missing
    ("cam1/clip_hevc.mkv", 0.5),
    ("cam1/clip_hevc.mkv", 0.95),  # B-frames: the last packets' pts still look complete
    ("cam3/clip_ffv1.mkv", 0.95),
    ("cam2/clip_vp9.webm", 0.5),
    ("cam2/clip_mpeg4.avi", 0.5),
    ("cam3/clip_prores.mov", 0.5),  # moov at the end: cannot open
    ("cam3/clip_prores.mov", 0.9999),  # moov at the end, a few bytes short
    ("extra/bframes_hevc.mp4", 0.99),
]


@pytest.mark.parametrize(("name", "keep"), BROKEN_CUTS)
def test_truncated_clips_are_broken(clip_dir: Path, tmp_path: Path, name: str, keep: float) -> None:
    path = _cut(clip_dir / name, tmp_path / Path(name).name, keep)
    info = probe.probe(path)
    assert not info.ok
    assert info.error


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.mp4", b""),
        ("notes.mp4", b"just some text, renamed\n" * 20),
        ("noise.mkv", bytes(range(256)) * 200),
        ("random.mkv", os.urandom(64 * 1024)),
        ("head_only.mkv", b"\x1a\x45\xdf\xa3" + os.urandom(1000)),
    ],
)
def test_garbage_is_broken(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    info = probe.probe(path)
    assert not info.ok
    assert info.error and info.error.startswith("cannot open")


def test_missing_and_odd_paths(tmp_path: Path) -> None:
    for path in (tmp_path / "missing.mp4", tmp_path):
        info = probe.probe(path)
        assert not info.ok and info.error


def test_audio_only_file_is_not_a_video(clip_dir: Path, tmp_path: Path) -> None:
    import av

    src = clip_dir / "cam1/clip_h264.mp4"
    dst = tmp_path / "audio.m4a"
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        stream = out.add_stream_from_template(inp.streams.audio[0])
        for packet in inp.demux(inp.streams.audio[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    info = probe.probe(dst)
    assert (info.ok, info.error) == (False, "no video stream")
    assert [a.codec for a in info.audio] == ["aac"]


def test_undecodable_file_name(clip_dir: Path, tmp_path: Path) -> None:
    name = os.fsencode(tmp_path) + b"/clip_\xff\xfe.mp4"
    try:
        with open(name, "wb") as fh:
            fh.write((clip_dir / "cam1/clip_h264.mp4").read_bytes())
    except OSError:
        pytest.skip("this filesystem refuses names that are not UTF-8")
    info = probe.probe(name)
    assert info.ok, info.error
    assert info.frames == 25
    assert probe.probe(os.fsdecode(name)) == info  # the surrogate-escaped str works too


def test_name_that_looks_like_a_url(
    clip_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "concat:10:30.mkv"
    shutil.copyfile(clip_dir / "cam1/clip_hevc.mkv", path)
    assert probe.probe(path).ok
    monkeypatch.chdir(tmp_path)  # a relative name with a colon
    assert probe.probe("concat:10:30.mkv").ok


def test_is_video_name() -> None:
    assert media.is_video_name("a/b/CLIP.MP4")
    assert media.is_video_name("x.m2ts") and media.is_video_name("y.webm")
    assert not media.is_video_name("notes.txt")
    assert not media.is_video_name("mp4")
    assert all(e.startswith(".") and e == e.lower() for e in media.VIDEO_EXTENSIONS)
