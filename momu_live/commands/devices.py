"""``momu devices``: cameras (OpenCV probe of indices 0-4), audio devices (sounddevice), MIDI ports (mido)."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("devices", help="list cameras, audio devices and MIDI ports",
                              description="List what `momu live` can use: --source webcam:N, audio:DEVICE, "
                                          "--audio-out DEVICE, --midi-out PORT.")
    p.add_argument("--cameras", type=int, default=5, metavar="N", help="probe camera indices 0..N-1 (0: skip)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds allowed for the audio device scan")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def probe_cameras(n: int) -> list[dict]:
    """Indices 0..n-1 that OpenCV can open and read a frame from (V4L2 only probes existing /dev/videoN)."""
    import os
    import sys

    if n <= 0:
        return []
    import cv2

    out = []
    for i in range(n):
        if sys.platform.startswith("linux") and not os.path.exists(f"/dev/video{i}"):
            continue
        cap = cv2.VideoCapture(i, cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY)
        try:
            if not cap.isOpened():
                continue
            ok, frame = cap.read()
            out.append({"index": i, "readable": bool(ok), "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                        "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), "fps": float(cap.get(cv2.CAP_PROP_FPS))})
        finally:
            cap.release()
    return out


def probe_audio(timeout: float) -> tuple[list[dict], str]:
    """Audio devices via sounddevice in a child process (PortAudio can hang scanning hosts)."""
    import json
    import subprocess
    import sys

    code = ("import json; from momu_live.bridge.audio_io import list_devices; print(json.dumps(list_devices()))")
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [], f"audio scan timed out after {timeout:.0f} s"
    if r.returncode != 0:
        return [], (r.stderr.strip().splitlines() or ["audio scan failed"])[-1]
    return json.loads(r.stdout), ""


def run(args) -> int:
    import json

    from momu_live.bridge import midi

    cams = probe_cameras(args.cameras)
    audio, audio_err = probe_audio(args.timeout)
    mouts, mins = midi.list_outputs(), midi.list_inputs()
    if args.json:
        print(json.dumps({"cameras": cams, "audio": audio, "audio_error": audio_err,
                          "midi_outputs": mouts, "midi_inputs": mins}, indent=2))
        return 0
    print("Cameras (--source webcam:N):")
    for c in cams:
        print(f"  {c['index']}: {c['width']}x{c['height']} @ {c['fps']:.0f} fps" + ("" if c["readable"] else " (no frame)"))
    if not cams:
        print("  none found")
    print("Audio devices (--source audio:NAME, --audio-out NAME; a name substring is enough):")
    for d in audio:
        print(f"  {d['index']}: {d['name']} [{d['hostapi']}] in={d['inputs']} out={d['outputs']} "
              f"{d['default_samplerate']:.0f} Hz")
    if not audio:
        print(f"  none found{': ' + audio_err if audio_err else ''}")
    print("MIDI outputs (--midi-out NAME):")
    for n in mouts:
        print(f"  {n}")
    if not mouts:
        print("  none (no ALSA sequencer / JACK server, or no ports)")
    print("MIDI inputs:")
    for n in mins:
        print(f"  {n}")
    if not mins:
        print("  none")
    return 0
