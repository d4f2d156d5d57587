"""Words from video frames (issue 23 point 4, issue 26): what reading a video's sampled frames would cost.

Writes a 1-minute 1080p H.264 clip (10 fps, a keyframe a second) whose frames alternate shapes pictures
and a caption in large type; then, for a cap of --frames frames spread over the video's sample times:
the frame decoded again at its time (video.frame_at, as thumbnails do: short side 448), the words gate
(WordReader.has_words) on each, and the full read (WordReader.read) on the frames the gate passes.
The indexing of the same clip (video.read_video: hash excluded) is measured alongside for scale.
Figures: ms per frame (median) and seconds per video (= per video minute for this clip); what was read.

    python benchmarks/bench_video_words.py --frames 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common
import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(common.REPO / "tests"))

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
CAPTION = "HAPPY BIRTHDAY ANNA"


def write_clip(path: Path, seconds: int, size: tuple[int, int], fps: int = 10) -> None:
    """A clip of scenes a second or more long: shapes, then a captioned frame, in turn."""
    import av
    from shapekit import CLASSES, shape_image

    captioned = Image.new("RGB", size, (250, 250, 245))
    ImageDraw.Draw(captioned).text(
        (120, size[1] // 2 - 60), CAPTION, fill=(20, 20, 20), font=ImageFont.truetype(FONT, 96)
    )
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.gop_size = fps
        stream.options = {"preset": "ultrafast"}
        for second in range(seconds):
            if second % 10 < 5:
                colour, shape = CLASSES[second % len(CLASSES)]
                picture = shape_image(colour, shape, seed=second, size=size, background="light")
            else:
                picture = captioned
            frame = av.VideoFrame.from_ndarray(np.asarray(picture), format="rgb24")
            for _ in range(fps):
                container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=8, help="frames read per video (the cap)")
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    from imgd.daemon.ingest import video
    from imgd.daemon.ingest.words import WordReader

    with tempfile.TemporaryDirectory(prefix="imgd-bench-vwords-") as tmp:
        clip = Path(tmp) / "clip.mp4"
        started = time.perf_counter()
        write_clip(clip, args.seconds, (1920, 1080))
        log(f"wrote {args.seconds} s of 1080p in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        sampled = video.read_video(str(clip))
        sampling = time.perf_counter() - started
        times = [frame.at for frame in sampled.frames]
        chosen = [
            times[round(i * (len(times) - 1) / max(1, args.frames - 1))] for i in range(min(args.frames, len(times)))
        ]
        reader = WordReader(threads=1)
        started = time.perf_counter()
        reader.has_words(Image.new("RGB", (64, 64)))  # the models' load, apart
        load = time.perf_counter() - started
        decode, gate, read, found = [], [], [], set()
        cpu = time.process_time()
        wall = time.perf_counter()
        for at in chosen:
            started = time.perf_counter()
            image = video.frame_at(str(clip), at)
            decode.append(time.perf_counter() - started)
            started = time.perf_counter()
            passed = reader.has_words(image)
            gate.append(time.perf_counter() - started)
            if passed:
                started = time.perf_counter()
                found.update(line.text for line in reader.read(image))
                read.append(time.perf_counter() - started)
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu

    def ms(values: list[float]) -> str:
        return f"{1000 * statistics.median(values):.0f} ms" if values else "-"

    print(f"sampling for the index: {len(times)} frames in {sampling:.2f} s; OCR models load {load:.2f} s")
    print(
        f"words of {len(chosen)} frames: decode {ms(decode)}/frame, gate {ms(gate)}/frame, "
        f"read {ms(read)}/frame on {len(read)} frames with words; {wall:.2f} s wall, {cpu:.2f} CPU-s per video"
    )
    print(f"read: {sorted(found)}")
    return 0


def log(message: str) -> None:
    common.log(message)


if __name__ == "__main__":
    sys.exit(main())
