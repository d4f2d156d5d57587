"""Words in pictures: the words pass's speed, the gate's recall and cost, the words recovered, the query at 1M.

Part 1 renders a corpus (default 1,000 pictures, 10% with words: receipts, screenshots, signs and
documents in Debian's DejaVu and Liberation fonts, turned 0/90/180/270 degrees plus a few, with
varied contrast; the rest photo-like: blobs, gradients, noise, at 1024x768) and runs the words pass's
reader on each, as the daemon does (the gate, then the full read where it found text), on
`--threads` cores. It reports the pass's pictures/s, the gate's recall over the pictures with words,
its cost per picture without, and the share of rendered words found in what was read (folded
as the catalog folds them).

Part 2 builds a catalog of `--contents` contents (default 1M) of which a tenth have words, and times
what a `--words` query adds: the words filter's selection of vector ids (the SQL the search runs),
and the fused ranking's FTS5 lookup.

    python benchmarks/bench_words.py                 # both parts
    python benchmarks/bench_words.py --pictures 200  # a smaller sample on a busy machine
    python benchmarks/bench_words.py --skip-query / --skip-pass
    python benchmarks/bench_words.py --hard-cases --skip-pass --skip-query  # the gates on unusual pictures
    python benchmarks/bench_words.py --gate-sizes --skip-pass --skip-query  # the detector at smaller sizes
    python benchmarks/bench_words.py --compare-runtime --skip-query  # OpenVINO where measured faster vs ORT alone
    python benchmarks/bench_words.py --child --skip-query  # the pass in process, then through the words child
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype")
VOCABULARY = [
    "store",
    "market",
    "total",
    "cash",
    "change",
    "receipt",
    "invoice",
    "order",
    "number",
    "date",
    "time",
    "price",
    "amount",
    "tax",
    "paid",
    "card",
    "visa",
    "coffee",
    "bread",
    "milk",
    "eggs",
    "apples",
    "hammer",
    "nails",
    "paint",
    "brush",
    "screws",
    "tape",
    "garden",
    "hose",
    "ticket",
    "parking",
    "zone",
    "valid",
    "until",
    "platform",
    "train",
    "departure",
    "arrival",
    "gate",
    "boarding",
    "seat",
    "window",
    "settings",
    "wifi",
    "bluetooth",
    "battery",
    "display",
    "sound",
    "privacy",
    "update",
    "download",
    "cancel",
    "continue",
    "welcome",
    "meeting",
    "agenda",
    "project",
    "report",
    "summary",
    "quarterly",
    "results",
    "revenue",
    "growth",
    "budget",
    "plan",
    "street",
    "avenue",
    "road",
    "exit",
    "entrance",
    "open",
    "closed",
    "sale",
    "hotel",
    "pharmacy",
    "bakery",
]


def fonts() -> list[Path]:
    found = sorted(FONT_DIR.glob("dejavu/*.ttf")) + sorted(FONT_DIR.glob("liberation/*.ttf"))
    return [f for f in found if "Oblique" not in f.name and "Italic" not in f.name] or found


def _colours(rng: random.Random) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Ink and paper, with a contrast from strong to middling."""
    paper = rng.randrange(150, 256)
    ink = rng.randrange(0, max(1, paper - rng.choice((80, 120, 180))))
    tint = [rng.randrange(-20, 21) for _ in range(3)]
    return tuple(max(0, min(255, ink + t)) for t in tint), tuple(max(0, min(255, paper + t)) for t in tint)


def _words(rng: random.Random, count: int) -> list[str]:
    return [rng.choice(VOCABULARY) for _ in range(count)]


def text_picture(rng: random.Random, kind: str, faces: list[Path]) -> tuple[Image.Image, list[str]]:
    """A picture with words, and the words rendered in it."""
    ink, paper = _colours(rng)
    face = str(rng.choice(faces))
    rendered: list[str] = []
    if kind == "receipt":
        page = Image.new("RGB", (520, 760), paper)
        font = ImageFont.truetype(face, 26)
        lines = [" ".join(_words(rng, 2)).upper()] + [
            f"{rng.choice(VOCABULARY)} {rng.randrange(1, 99)}.{rng.randrange(100):02d}" for _ in range(7)
        ]
        lines.append(f"TOTAL {rng.randrange(10, 300)}.{rng.randrange(100):02d}")
        spacing = 70
    elif kind == "screenshot":
        page = Image.new("RGB", (1080, 720), paper)
        font = ImageFont.truetype(face, 22)
        lines = [" ".join(_words(rng, rng.randrange(2, 5))).capitalize() for _ in range(9)]
        spacing = 62
    elif kind == "sign":
        page = photo_picture(rng, (1024, 768))
        plate = Image.new("RGB", (760, 260), paper)
        font = ImageFont.truetype(face, 80)
        lines = [" ".join(_words(rng, 2)).upper()]
        ImageDraw.Draw(plate).text((30, 80), lines[0], fill=ink, font=font)
        page.paste(plate, (130, 250))
        rendered = lines
        spacing = 0
    else:  # document
        page = Image.new("RGB", (850, 1100), paper)
        font = ImageFont.truetype(face, 24)
        lines = [" ".join(_words(rng, 5)) for _ in range(14)]
        spacing = 60
    if kind != "sign":
        draw = ImageDraw.Draw(page)
        for row, line in enumerate(lines):
            draw.text((40, 40 + row * spacing), line, fill=ink, font=font)
        rendered = lines
    turn = rng.choice((0, 0, 90, 180, 270)) + rng.choice((0, 0, -4, -2, 2, 5))
    if turn:
        page = page.rotate(turn, expand=True, fillcolor=paper, resample=Image.Resampling.BICUBIC)
    return page, [w for line in rendered for w in line.split()]


def photo_picture(rng: random.Random, size: tuple[int, int] = (1024, 768)) -> Image.Image:
    """A picture without words: blobs, a gradient or a noisy texture."""
    kind = rng.choice(("blobs", "gradient", "noise"))
    if kind == "gradient":
        a, b = np.array([rng.randrange(256) for _ in range(3)]), np.array([rng.randrange(256) for _ in range(3)])
        t = np.linspace(0, 1, size[0])[None, :, None]
        array = np.broadcast_to(a * (1 - t) + b * t, (size[1], size[0], 3)).astype(np.uint8)
        return Image.fromarray(array)
    if kind == "noise":
        small = np.random.default_rng(rng.randrange(2**31)).integers(0, 256, (size[1] // 16, size[0] // 16, 3))
        return Image.fromarray(small.astype(np.uint8)).resize(size, Image.Resampling.BICUBIC)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(25):
        x, y, r = rng.randrange(size[0]), rng.randrange(size[1]), rng.randrange(20, 200)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
    return image.filter(ImageFilter.GaussianBlur(3))


def _gate_before(reader, path: str, data: bytes) -> tuple[bool, object]:  # noqa: ANN001 - a WordReader
    """The gate as it was before issue 26's gate work: the picture decoded with its shortest side >= 480
    (a 1024x768 JPEG in full), shrunk to 480 from there, the detector on every picture."""
    from imgd.daemon.ingest import imaging
    from imgd.daemon.ingest.words import GATE_SIDE, _gate_input, _gate_picture

    image, _ = imaging.decode(path, data, 200_000_000, GATE_SIDE)
    batch, shape = _gate_input(_gate_picture(image))
    detector = reader._models().text_det
    boxes, _ = detector.postprocess_op(detector.infer(batch)[0], shape)
    return len(boxes) > 0, image


def _read_before(reader, path: str, data: bytes) -> list:  # noqa: ANN001 - a WordReader
    """read_file as it was before: the old gate, then the full read."""
    from imgd.daemon.ingest import imaging
    from imgd.daemon.ingest.words import READ_SIDE

    passed, image = _gate_before(reader, path, data)
    if not passed:
        return []
    if max(image.size) < READ_SIDE:
        image = imaging.decode(path, data, 200_000_000, READ_SIDE)[0]
    return reader.read(image)


def _gate_after(reader, path: str, data: bytes) -> tuple[bool, bool]:  # noqa: ANN001 - a WordReader
    """The gate as read_file runs it now: (the stroke test passed, the whole gate passed)."""
    from imgd.daemon.ingest.words import _gate_picture, gate_decode, has_strokes

    image, _ = gate_decode(path, data, 200_000_000)
    return has_strokes(_gate_picture(image)), reader.has_words(image)


def _real_photos(rng: random.Random, folder: Path, crops: int) -> list[str]:
    """Real, textured photos: scikit-learn's two sample photos, and crops of them scaled to 1024x768."""
    try:
        import sklearn.datasets
    except ImportError:
        return []
    found = sorted(Path(sklearn.datasets.__file__).parent.joinpath("images").glob("*.jpg"))
    originals = [Image.open(p).convert("RGB") for p in found]
    paths = [str(p) for p in found]
    for i in range(crops if originals else 0):
        image = originals[i % len(originals)]
        share = rng.uniform(0.4, 1.0)
        width, height = int(image.width * share), int(image.height * share)
        x, y = rng.randrange(image.width - width + 1), rng.randrange(image.height - height + 1)
        path = folder / f"real-{i:03d}.jpg"
        image.crop((x, y, x + width, y + height)).resize((1024, 768), Image.Resampling.BICUBIC).save(path, quality=90)
        paths.append(str(path))
    return paths


def _ms(values: list[float]) -> str:
    return f"mean {1000 * statistics.mean(values):.1f} ms, p50 {1000 * statistics.median(values):.1f} ms"


def words_pass(
    pictures: int,
    share: float,
    threads: int,
    seed: int,
    gate_sample: int,
    compare_pass: bool,
    intra: int,
    compare_runtime: bool = False,
    child: bool = False,
) -> None:
    from imgd.daemon.ingest import imaging
    from imgd.daemon.ingest.words import WordReader, _gate_detector_input, gate_decode, read_file
    from imgd.daemon.wordfold import fold, fold_lines

    rng = random.Random(seed)
    faces = fonts()
    kinds = ("receipt", "screenshot", "sign", "document")
    with_words = max(1, round(pictures * share))
    folder = Path(tempfile.mkdtemp(prefix="bench-words-pics-"))
    corpus: list[tuple[str, list[str]]] = []
    for i in range(pictures):
        if i < with_words:
            kind = kinds[i % len(kinds)]
            image, words = text_picture(rng, kind, faces)
            path = folder / f"{i:05d}-{kind}.{'png' if kind == 'screenshot' else 'jpg'}"
        else:
            image, words, path = photo_picture(rng), [], folder / f"{i:05d}-photo.jpg"
        image.save(path, quality=90)
        corpus.append((str(path), words))
    rng.shuffle(corpus)
    # More pictures with words, for the gates' recall alone (the full read is what costs; the gate is cheap).
    sample: list[str] = []
    for i in range(gate_sample):
        kind = kinds[i % len(kinds)]
        path = folder / f"gate-{i:05d}-{kind}.{'png' if kind == 'screenshot' else 'jpg'}"
        text_picture(rng, kind, faces)[0].save(path, quality=90)
        sample.append(str(path))
    real = _real_photos(rng, folder, 20)
    # As the pass runs it (1 thread per model): one core per picture, a picture per thread; each model on
    # the runtime measured fastest on this machine (wordsruntime.py), and a reader on ONNX Runtime alone.
    started = time.perf_counter()
    state_dir = Path(tempfile.mkdtemp(prefix="bench-words-state-"))
    reader = WordReader(threads=intra, state_dir=state_dir)
    reader.has_words(text_picture(rng, "receipt", faces)[0])  # load the models outside the timing (once per daemon)
    loaded = time.perf_counter() - started
    onnx = WordReader(threads=intra, runtime="onnx")
    onnx.has_words(text_picture(rng, "receipt", faces)[0])
    print(
        f"pictures: {pictures} ({with_words} with words), threads: {threads}, threads per model: "
        f"{intra}, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"runtimes chosen: {reader.runtimes} (loading and measuring: {loaded:.1f} s)")

    # 1. What a picture without words costs alone (its bytes, a small decode, the gate), one at a time,
    # the gate before and after in turns on the same pictures; and each gate's recall.
    def cost(paths: list[str], gate: Callable[[str, bytes], object]) -> tuple[list[float], list[float]]:
        wall, cpu = [], []
        for path in paths:
            t0, c0 = time.perf_counter(), time.process_time()
            gate(path, imaging.read_bytes(path))
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        return wall, cpu

    photos = [path for path, words in corpus if not words]
    before = cost(photos, lambda path, data: _gate_before(onnx, path, data))
    after = cost(photos, lambda path, data: read_file(reader, path, data, 200_000_000))
    skipped = sum(not _gate_after(reader, path, imaging.read_bytes(path))[0] for path in photos)
    print(f"a picture without words alone (read, decode, gate), CPU before: {_ms(before[1])}; after: {_ms(after[1])}")
    print(f"  wall before: {_ms(before[0])}; after: {_ms(after[0])}")
    if compare_runtime:
        on_onnx = cost(photos, lambda path, data: read_file(onnx, path, data, 200_000_000))
        print(f"  after on ONNX Runtime alone: CPU {_ms(on_onnx[1])}, wall {_ms(on_onnx[0])}")
    print(f"  the stroke test skipped {skipped}/{len(photos)} of them without the detector")
    texts = [path for path, words in corpus if words] + sample
    old = sum(_gate_before(onnx, path, imaging.read_bytes(path))[0] for path in texts)
    new = [_gate_after(reader, path, imaging.read_bytes(path)) for path in texts]
    print(
        f"gate recall over {len(texts)} pictures with words: before {old}/{len(texts)}, "
        f"after {sum(g for _, g in new)}/{len(texts)} (the stroke test alone {sum(s for s, _ in new)}/{len(texts)})"
    )
    if real:
        before, after = (
            cost(real, lambda path, data: _gate_before(onnx, path, data)),
            cost(real, lambda path, data: read_file(reader, path, data, 200_000_000)),
        )
        passed = sum(_gate_after(reader, path, imaging.read_bytes(path))[0] for path in real)
        print(
            f"real textured photos ({len(real)}: scikit-learn's 2 and crops), CPU before: {_ms(before[1])}; "
            f"after: {_ms(after[1])}; the stroke test passed {passed}/{len(real)} on to the detector"
        )
        if compare_runtime:
            # In turns, picture by picture: the machine's load shifts alike for both.
            on_onnx: tuple[list[float], list[float]] = ([], [])
            chosen: tuple[list[float], list[float]] = ([], [])
            for _ in range(2):
                for path in real:
                    for runner, into in ((onnx, on_onnx), (reader, chosen)):
                        wall, cpu = cost([path], lambda p, data, r=runner: read_file(r, p, data, 200_000_000))
                        into[0].extend(wall)
                        into[1].extend(cpu)
            print(
                f"  real textured photos, the gate in turns: on ONNX Runtime alone CPU {_ms(on_onnx[1])}, "
                f"wall {_ms(on_onnx[0])}; on the chosen runtimes CPU {_ms(chosen[1])}, wall {_ms(chosen[0])}"
            )
            # The detector alone on the gate's input (what the runtime changes), in turns as well.
            alone: dict[str, list[float]] = {"ONNX Runtime": [], "chosen": []}
            for _ in range(2):
                for path in real:
                    batch, _shape = _gate_detector_input(gate_decode(path, imaging.read_bytes(path), 200_000_000)[0])
                    for name, runner in (("ONNX Runtime", onnx), ("chosen", reader)):
                        detector = runner._models().text_det
                        c0 = time.process_time()
                        detector.infer(batch)
                        alone[name].append(time.process_time() - c0)
            print(
                f"  the detector alone on them, CPU: on ONNX Runtime {_ms(alone['ONNX Runtime'])}; "
                f"on the chosen runtime ({reader.runtimes['detector']}) {_ms(alone['chosen'])}"
            )

    # 2. The pass as the daemon runs it: `threads` pictures at once, each on one core.
    def run(label: str, read: Callable[[str, bytes], list], cpu_elsewhere: Callable[[], float] = lambda: 0.0) -> None:
        def one(item: tuple[str, list[str]]) -> tuple[str, list[str], list]:
            path, words = item
            return path, words, read(path, imaging.read_bytes(path))

        missed: list[str] = []
        rendered = recovered = 0
        started, started_cpu = time.perf_counter(), time.process_time() + cpu_elsewhere()
        with ThreadPoolExecutor(threads) as pool:
            for path, words, lines in pool.map(one, corpus):
                if not words:
                    continue
                if not lines:
                    missed.append(os.path.basename(path))
                text = fold_lines([line.text for line in lines])
                rendered += len(words)
                recovered += sum(fold(w) in text for w in words)
        elapsed, cpu = time.perf_counter() - started, time.process_time() + cpu_elsewhere() - started_cpu
        found = with_words - len(missed)
        # On a shared machine the wall clock counts other jobs' time too; the CPU seconds this process
        # used, spread over the cores it keeps busy (threads x ONNX Runtime threads per model), say what
        # the pass would do with those cores to itself.
        print(
            f"words pass {label}: {pictures / elapsed:.2f} pictures/s wall ({elapsed:.1f} s, load "
            f"{os.getloadavg()[0]:.1f}); {cpu:.1f} CPU s, "
            f"{pictures / (cpu / (threads * intra)):.2f} pictures/s on {threads * intra} free cores"
        )
        print(f"  pictures with words read: {found}/{with_words}; missed: {', '.join(missed) or 'none'}")
        print(f"  rendered words recovered: {recovered}/{rendered} = {100 * recovered / max(rendered, 1):.1f}%")

    if compare_pass:
        run("before", lambda path, data: _read_before(onnx, path, data))
    if compare_runtime:
        run("after, ONNX Runtime alone", lambda path, data: read_file(onnx, path, data, 200_000_000))
    run(f"after, {reader.runtimes}", lambda path, data: read_file(reader, path, data, 200_000_000))
    if child:
        # As the daemon reads now: through the words child (wordschild.py), which reads the file itself; its
        # CPU seconds (from /proc) count with this process's. Its start and model load are outside the timing.
        from imgd.daemon.ingest.wordschild import WordsChild

        words_child = WordsChild(threads, state_dir, "auto")  # one core per picture, as the pass
        words_child.read_file(corpus[0][0], 200_000_000)

        def child_cpu() -> float:
            fields = Path(f"/proc/{words_child.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        try:
            run(
                f"through the words child, {words_child.runtimes}",
                lambda path, _data: words_child.read_file(path, 200_000_000),
                child_cpu,
            )
        finally:
            words_child.close()


def hard_cases(seed: int) -> None:
    """Pictures with words outside the corpus's kinds: what the gate before and after says of each."""
    from imgd.daemon.ingest.words import WordReader, _gate_picture, gate_decode, has_strokes

    rng = random.Random(seed)
    bold, sans = str(FONT_DIR / "dejavu/DejaVuSans-Bold.ttf"), str(FONT_DIR / "dejavu/DejaVuSans.ttf")
    cases = [  # name, size, font, font size, text, ink, paper, blur, over a photo-like picture
        ("a 220 px bold headline on 1600x1200", (1600, 1200), bold, 220, "SALE", 20, 230, 0, False),
        ("a 400 px bold headline on 2000x1500", (2000, 1500), bold, 400, "OPEN", 20, 230, 0, False),
        ("a 60 px EXIT sign in a 4000x3000 photo", (4000, 3000), bold, 60, "EXIT", 250, 30, 0, True),
        ("one 40 px word on a plate in a photo", (1024, 768), sans, 40, "hotel", 40, 220, 0, True),
        ("30 px print, 50 grey levels of contrast", (1024, 768), sans, 30, "quarterly report", 170, 220, 0, False),
        ("30 px print, 35 grey levels of contrast", (1024, 768), sans, 30, "quarterly report", 185, 220, 0, False),
        ("a 60 px sign blurred (radius 3 px)", (1024, 768), sans, 60, "PHARMACY", 30, 230, 3, True),
        ("a 60 px sign blurred (radius 6 px)", (1024, 768), sans, 60, "PHARMACY", 30, 230, 6, True),
        ("a 120 px bold light sign in a photo", (1024, 768), bold, 120, "BAKERY", 240, 20, 0, True),
    ]
    reader = WordReader(threads=1)
    for name, size, face, points, text, ink, paper, blur, photo in cases:
        image = photo_picture(rng, size) if photo else Image.new("RGB", size, (paper,) * 3)
        draw = ImageDraw.Draw(image)
        top = size[1] // 3
        if photo:
            draw.rectangle((size[0] // 8, top, size[0] * 7 // 8, top + int(points * 1.6)), fill=(paper,) * 3)
        draw.text((size[0] // 8 + 10, top + points // 4), text, fill=(ink,) * 3, font=ImageFont.truetype(face, points))
        if blur:
            image = image.filter(ImageFilter.GaussianBlur(blur))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
        data = buffer.getvalue()
        small, _ = gate_decode("case.jpg", data, 200_000_000)
        before = _gate_before(reader, "case.jpg", data)[0]
        after = has_strokes(_gate_picture(small)), reader.has_words(small)
        print(f"{name}: gate before {before}; stroke test {after[0]}, gate after {after[1]}")


def gate_sizes(seed: int, with_words: int, real_crops: int) -> None:
    """The detector alone at smaller gate sizes, in ONNX Runtime and OpenVINO: CPU per picture without
    words, and the pictures with words it misses."""
    import openvino
    from imgd.daemon.ingest import words
    from imgd.daemon.ingest.imaging import decode

    rng = random.Random(seed)
    faces = fonts()
    kinds = ("receipt", "screenshot", "sign", "document")
    folder = Path(tempfile.mkdtemp(prefix="bench-words-sizes-"))
    pictures: list[tuple[str, Image.Image]] = []
    for i in range(with_words):
        kind = kinds[i % len(kinds)]
        buffer = io.BytesIO()
        text_picture(rng, kind, faces)[0].save(buffer, "PNG" if kind == "screenshot" else "JPEG", quality=90)
        pictures.append((kind, decode("p", buffer.getvalue(), 200_000_000, 480)[0]))
    for path in _real_photos(rng, folder, real_crops):
        pictures.append(("real photo", decode(path, Path(path).read_bytes(), 200_000_000, 480)[0]))
    for _ in range(with_words):
        pictures.append(("photo-like", photo_picture(rng)))
    reader = words.WordReader(threads=1, runtime="onnx")  # its detector.infer: ONNX Runtime
    detector = reader._models().text_det
    import rapidocr_onnxruntime

    model = Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_det_infer.onnx"
    compiled = openvino.Core().compile_model(
        str(model), "CPU", {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"}
    )
    runtimes = {"onnxruntime": lambda batch: detector.infer(batch)[0], "openvino": lambda batch: compiled(batch)[0]}
    without = len(pictures) - with_words
    print(f"gate sizes: {with_words} pictures with words, {without} without, load {os.getloadavg()[0]:.1f}")
    kept = words.GATE_SIDE
    try:
        for side in (480, 448, 416, 384, 320):
            words.GATE_SIDE = side
            for name, run in runtimes.items():
                cpu, missed, passed = [], [], 0
                for kind, image in pictures:
                    batch, shape = words._gate_input(words._gate_picture(image))
                    times = []
                    for _ in range(2):  # the faster of two: the first run of a new shape is slower
                        c0 = time.process_time()
                        found = run(batch)
                        times.append(time.process_time() - c0)
                    boxes, _ = detector.postprocess_op(found, shape)
                    if kind in kinds:
                        missed += [] if len(boxes) else [kind]
                    else:
                        cpu.append(min(times))
                        passed += len(boxes) > 0
                print(
                    f"  {side} px, {name}: a picture without words {_ms(cpu)}; with words missed "
                    f"{len(missed)}/{with_words} ({', '.join(missed) or 'none'}); without words passed {passed}"
                )
    finally:
        words.GATE_SIDE = kept


def query_at_scale(contents: int, with_words: int, runs: int, seed: int) -> None:
    from imgd.daemon.protocol import Filters
    from imgd.daemon.search.words import WORD_CANDIDATES, filters_of
    from imgd.daemon.store.catalog import Catalog
    from imgd.daemon.wordfold import any_of, fold_lines, tokens

    rng = random.Random(seed)
    folder = Path(tempfile.mkdtemp(prefix="bench-words-"))
    catalog = Catalog(folder / "catalog.db")
    built = time.perf_counter()
    conn = catalog.conn
    blob = np.zeros(4, dtype=np.float16).tobytes()
    with catalog.transaction():
        catalog.ensure_model("bench", 4)
        conn.executemany(
            "INSERT INTO contents(id, hash, width, height) VALUES (?, ?, 64, 64)",
            ((i, f"{i:064x}") for i in range(1, contents + 1)),
        )
        conn.executemany(
            "INSERT INTO media(content_id, version, width, height) VALUES (?, 1, 64, 64)",
            ((i,) for i in range(1, contents + 1)),
        )
        conn.executemany(
            "INSERT INTO vectors(content_id, at, vector) VALUES (?, 0, ?)", ((i, blob) for i in range(1, contents + 1))
        )
        conn.executemany(
            "INSERT INTO files(path, content_id, size, mtime_ns, status) VALUES (?, ?, 1, 1, 'ok')",
            ((f"/p/{i}.jpg".encode(), i) for i in range(1, contents + 1)),
        )
        chosen = rng.sample(range(1, contents + 1), with_words)
        for cid in chosen:
            lines = [" ".join(rng.choice(VOCABULARY) for _ in range(4)) for _ in range(rng.randrange(1, 12))]
            if rng.random() < 0.001:
                lines.append("HARDWARE STORE INV-2023")
            conn.execute("INSERT INTO words(content_id, read_at, lines) VALUES (?, 0, '[]')", (cid,))
            conn.execute("INSERT INTO words_fts(rowid, text) VALUES (?, ?)", (cid, fold_lines(lines)))
    print(
        f"catalog: {contents} contents, {with_words} with words, built in {time.perf_counter() - built:.0f} s, "
        f"{os.path.getsize(folder / 'catalog.db') / 2**20:.0f} MiB"
    )
    catalog.close()
    reader = Catalog(folder / "catalog.db", readonly=True)
    for phrase in ("inv-2023", "hardw", "bakery", "total", "store market"):
        (chosen_filter,) = filters_of(Filters(words=phrase))
        times, count = [], 0
        for _ in range(runs):
            t0 = time.perf_counter()
            count = len(reader.vector_ids_matching([chosen_filter]))
            times.append(time.perf_counter() - t0)
        print(f"--words {phrase!r}: {count} pictures, selection p50 {1000 * statistics.median(times):.1f} ms")
    for text in ("receipt from the hardware store", "quarterly report"):
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            reader.words_matching(any_of(tokens([text])), limit=WORD_CANDIDATES)
            times.append(time.perf_counter() - t0)
        print(f"fused search {text!r}: words ranking p50 {1000 * statistics.median(times):.1f} ms")
    reader.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pictures", type=int, default=1000)
    parser.add_argument("--share", type=float, default=0.10, help="share of pictures with words")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--contents", type=int, default=1_000_000)
    parser.add_argument("--with-words", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--seed", type=int, default=26)
    parser.add_argument("--gate-sample", type=int, default=200, help="more pictures with words for the gates' recall")
    parser.add_argument("--intra", type=int, default=1, help="ONNX Runtime threads per model (the pass: 1)")
    parser.add_argument("--compare-pass", action="store_true", help="run the pass with the gate before, too")
    parser.add_argument(
        "--compare-runtime", action="store_true", help="the gate and the pass on ONNX Runtime alone, too"
    )
    parser.add_argument("--child", action="store_true", help="the pass through the words child too (as the daemon)")
    parser.add_argument("--hard-cases", action="store_true", help="the gates on pictures unlike the corpus's")
    parser.add_argument("--gate-sizes", action="store_true", help="the detector alone at smaller sizes, ORT/OpenVINO")
    parser.add_argument("--skip-pass", action="store_true")
    parser.add_argument("--skip-query", action="store_true")
    args = parser.parse_args()
    if not args.skip_pass:
        words_pass(
            args.pictures,
            args.share,
            args.threads,
            args.seed,
            args.gate_sample,
            args.compare_pass,
            args.intra,
            args.compare_runtime,
            args.child,
        )
    if args.hard_cases:
        hard_cases(args.seed)
    if args.gate_sizes:
        gate_sizes(args.seed, 40, 20)
    if not args.skip_query:
        query_at_scale(args.contents, args.with_words, args.runs, args.seed)


if __name__ == "__main__":
    main()
