"""Skeleton video rendering (OpenCV) and ffmpeg muxing of audio into video.

``render_skeleton(joints, fps, out_mp4, wav=None, sr=22050)``: front view (x right, y up) of canonical
joints, camera following the pelvis horizontally, floor line, time stamp; frames are piped to
ffmpeg (H.264, yuv420p) at the exact motion rate, with the audio muxed when given.
``mux_audio(video, wav, sr, out_mp4)``: replace/add the soundtrack of a video (video stream copied,
cut to the shorter of the two).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from momu_live import MomuError
from momu_live.models.timebase import DEFAULT_TIMEBASE


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise MomuError("ffmpeg not found; install it (apt-get install ffmpeg) to write videos")
    return exe


def _rate(fps) -> str:
    r = Fraction(fps).limit_denominator(100000) if not isinstance(fps, Fraction) else fps
    return f"{r.numerator}/{r.denominator}"


def _write_wav(wav: np.ndarray, sr: int, folder: Path) -> Path:
    import soundfile as sf

    p = folder / "audio.wav"
    sf.write(str(p), np.asarray(wav, np.float32).reshape(-1), int(sr), subtype="PCM_16")
    return p


def draw_frames(joints: np.ndarray, size: tuple[int, int] = (480, 480), fps: float = 30.0):
    """Yield BGR uint8 frames (H, W, 3) of the skeleton (generator, constant memory)."""
    import cv2

    from momu_live.models.skeleton import BONES, JOINT_INDEX

    W, H = size
    j = np.asarray(joints, np.float32)
    lo_y = float(np.percentile(j[:, :, 1], 1))
    hi_y = float(np.percentile(j[:, :, 1], 99))
    span = max(hi_y - lo_y, 1.0) * 1.3
    scale = H / span
    left = {i for n, i in JOINT_INDEX.items() if n.startswith("l_")}
    for t in range(len(j)):
        img = np.full((H, W, 3), 250, np.uint8)
        cx = float(j[t, 0, 0])
        px = (W / 2 + (j[t, :, 0] - cx) * scale).astype(np.int32)
        py = (H - 0.1 * H - (j[t, :, 1] - lo_y) * scale).astype(np.int32)
        floor_y = int(H - 0.1 * H)
        cv2.line(img, (0, floor_y), (W, floor_y), (180, 180, 180), 1)
        for a, b in BONES:
            col = (200, 90, 30) if b in left else (30, 90, 200)
            cv2.line(img, (int(px[a]), int(py[a])), (int(px[b]), int(py[b])), col, 3, cv2.LINE_AA)
        for i in range(len(px)):
            cv2.circle(img, (int(px[i]), int(py[i])), 3, (40, 40, 40), -1, cv2.LINE_AA)
        cv2.putText(img, f"{t / fps:6.2f} s", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (60, 60, 60), 1, cv2.LINE_AA)
        yield img


def stick_panel(ax, title: str | None = None, ylabel: str | None = None, fontsize: int = 8) -> None:
    """The one look of a stick-figure panel in the figures (model card, eval, VAE copies): a floor line,
    a 1.8 x 2.05 m box at equal scale, no ticks, the time as title on the top row, the row name at left."""
    ax.axhline(0, color="0.65", lw=0.8)
    ax.set_xlim(-0.9, 0.9)
    ax.set_ylim(-0.1, 1.95)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=9)
    if ylabel is not None:
        ax.set_ylabel(ylabel, fontsize=fontsize)


def render_skeleton(joints: np.ndarray, fps, out: str | Path, wav: np.ndarray | None = None, sr: int = DEFAULT_TIMEBASE.sample_rate,
                    size: tuple[int, int] = (480, 480), progress: bool = False) -> Path:
    """Canonical joints (T, 18, 3) at ``fps`` -> MP4 (with ``wav`` as soundtrack when given)."""
    from tqdm import tqdm

    j = np.asarray(joints, np.float32)
    if j.ndim != 3 or len(j) == 0:
        raise MomuError(f"render expects joints (T, 18, 3), got {j.shape}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    W, H = size
    with tempfile.TemporaryDirectory() as td:
        cmd = [_ffmpeg(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{W}x{H}",
               "-r", _rate(fps), "-i", "-"]
        if wav is not None:
            cmd += ["-i", str(_write_wav(wav, sr, Path(td))), "-c:a", "aac", "-b:a", "160k", "-shortest"]
        cmd += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(out)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            for img in tqdm(draw_frames(j, size, float(fps)), total=len(j), desc="render", disable=not progress):
                proc.stdin.write(img.tobytes())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        err = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            raise MomuError(f"ffmpeg failed writing {out}: {err.strip()[-400:]}")
    return out


def mux_audio(video: str | Path, wav: np.ndarray, sr: int, out: str | Path) -> Path:
    """Copy the video stream of ``video`` and add ``wav`` as its soundtrack (AAC), cut to the shorter."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as td:
        a = _write_wav(wav, sr, Path(td))
        cmd = [_ffmpeg(), "-y", "-loglevel", "error", "-i", str(video), "-i", str(a), "-map", "0:v:0", "-map", "1:a:0",
               "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "160k",
               "-shortest", "-t", f"{len(np.asarray(wav).reshape(-1)) / sr:.6f}", str(out)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise MomuError(f"ffmpeg failed muxing {video} + audio into {out}: {r.stderr.strip()[-400:]}")
    return out
