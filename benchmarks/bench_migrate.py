"""Catalog upgrade and metadata backfill: what an existing library pays when imgd starts keeping metadata.

1. migrate: a schema-1 catalog of --images contents (float16 vectors of --dim, 5% of them with a
   second path, 1% failed files) is written directly with sqlite3 in the released schema-1 layout,
   then opened with Catalog(), which checks it and runs the missing steps. The open of the upgraded
   file is timed too: the difference is the migration itself. Then a few metadata filters are timed
   on it (after filling its metadata with random values), for the query work that builds on them.
2. backfill: --files camera-sized JPEGs with EXIF (one 4000x3000 picture, each copy with its own EXIF
   block, so each is its own content) are catalogued as schema 1, the catalog is upgraded and
   Engine.backfill_all_media reads their headers. Timed with the files in the page cache and after
   evicting them (posix_fadvise DONTNEED); the bytes read per file come from /proc/self/io. A full read
   and decode of the same files (what embedding would need before the model) is timed for the ratio.

    python benchmarks/bench_migrate.py --images 100000 --files 300
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sqlite3
import struct
import time
from datetime import datetime
from pathlib import Path

import common
import numpy as np
from common import log
from imgd.daemon.store import migrations


def schema1(path: Path, dim: int) -> sqlite3.Connection:
    """An empty catalog exactly as the release before migrations wrote it."""
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN")
    migrations.MIGRATIONS[0].apply(conn)  # step 1 is the released schema, frozen
    for key, value in {"schema_version": "1", "model": "bench-model", "dim": str(dim), "generation": "1"}.items():
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))
    conn.execute("COMMIT")
    return conn


def synthesise(path: Path, images: int, dim: int) -> dict[str, int]:
    conn = schema1(path, dim)
    rng = np.random.default_rng(0)
    conn.execute("BEGIN")
    chunk = 10_000
    files = 0
    for start in range(0, images, chunk):
        n = min(chunk, images - start)
        vectors = rng.standard_normal((n, dim)).astype(np.float16)
        rows = [(start + i + 1, f"{start + i:040x}", 4000, 3000, vectors[i].tobytes()) for i in range(n)]
        conn.executemany("INSERT INTO contents(id, hash, width, height, vector) VALUES (?, ?, ?, ?, ?)", rows)
        file_rows = []
        for i in range(n):
            cid = start + i + 1
            name = f"/home/user/Pictures/{2005 + cid % 20}/{cid % 12 + 1:02d}/IMG_{cid:07d}.jpg"
            file_rows.append((name.encode(), cid, 3_300_000, 1_600_000_000_000_000_000 + cid * 10**9, "ok", None))
            if cid % 20 == 0:
                file_rows.append((f"/home/user/Backup/IMG_{cid:07d}.jpg".encode(), cid, 3_300_000, 1, "ok", None))
            if cid % 100 == 0:
                file_rows.append(
                    (f"/home/user/Pictures/bad/{cid}.jpg".encode(), None, 10, 1, "failed", "cannot decode")
                )
        conn.executemany(
            "INSERT INTO files(path, content_id, size, mtime_ns, status, error) VALUES (?, ?, ?, ?, ?, ?)", file_rows
        )
        files += len(file_rows)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {"contents": images, "files": files}


def bench_migrate(out: Path, images: int, dim: int) -> dict[str, object]:
    from imgd.daemon.search import filters as F
    from imgd.daemon.store.catalog import Catalog

    path = out / f"migrate-{images}.db"
    started = time.perf_counter()
    made = synthesise(path, images, dim)
    synth_s = time.perf_counter() - started
    size = path.stat().st_size
    log(f"synthesised a schema-1 catalog: {made} in {synth_s:.1f}s, {size / 2**20:.0f} MiB")

    started = time.perf_counter()
    catalog = Catalog(path)
    upgrade_open_s = time.perf_counter() - started
    assert catalog.schema_version == migrations.LATEST
    assert catalog.count_contents() == images and catalog.media_backlog_count() == images
    catalog.close()
    started = time.perf_counter()
    catalog = Catalog(path)
    plain_open_s = time.perf_counter() - started
    log(f"open + upgrade {upgrade_open_s:.2f}s; open of the upgraded file {plain_open_s:.2f}s")

    # Metadata as a backfill would leave it, then a few filters.
    cameras = [("Canon", "Canon EOS R5"), ("NIKON CORPORATION", "NIKON Z 6"), ("Apple", "iPhone 12")]
    with catalog.transaction():
        rows = []
        for cid in range(1, images + 1):
            make, model = cameras[cid % 3]
            taken = None if cid % 7 == 0 else f"{2005 + cid % 20}-{cid % 12 + 1:02d}-15 12:00:00"
            w, h = (4000, 3000) if cid % 3 else (3000, 4000)
            rows.append((1, "jpeg" if cid % 10 else "png", w, h, taken, make, model, cid))
        catalog.conn.executemany(
            "UPDATE media SET version = ?, format = ?, width = ?, height = ?, taken = ?, make = ?, model = ? "
            "WHERE content_id = ?",
            rows,
        )
    # Built inside the timing: a camera filter reads the catalog's cameras, as the searcher's does.
    filters = {
        "folder (5%)": lambda: [F.InFolders(("/home/user/Pictures/2010",))],
        "year (5%)": lambda: [F.TakenBetween(datetime(2010, 1, 1), datetime(2011, 1, 1))],
        "camera 'canon' (33%)": lambda: [F.Camera.among("canon", catalog.cameras())],
        "portrait png (3%)": lambda: [F.FileTypes(("png",)), F.Orientation("portrait")],
        "folder + camera (1.7%)": lambda: [
            F.InFolders(("/home/user/Pictures/2010",)),
            F.Camera.among("nikon", catalog.cameras()),
        ],
    }
    filter_ms: dict[str, dict[str, float]] = {}
    for name, where in filters.items():
        times = []
        for _ in range(3):
            started = time.perf_counter()
            found = catalog.content_ids_matching(where())
            times.append(time.perf_counter() - started)
        filter_ms[name] = {"selected": len(found), "ms": round(1000 * min(times), 1)}
        log(f"filter {name}: {len(found)} contents in {1000 * min(times):.1f} ms (best of 3)")
    catalog.close()
    path.unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return {
        "images": images,
        "files": made["files"],
        "dim": dim,
        "catalog_mib": round(size / 2**20, 1),
        "synthesise_s": round(synth_s, 2),
        "open_and_upgrade_s": round(upgrade_open_s, 2),
        "open_upgraded_s": round(plain_open_s, 2),
        "migration_s": round(upgrade_open_s - plain_open_s, 2),
        "filters": filter_ms,
    }


# -- backfill ------------------------------------------------------------------------------


def exif_block(n: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = ["Canon", "NIKON CORPORATION", "Apple"][n % 3]
    exif[0x0110] = ["Canon EOS R5", "NIKON Z 6", "iPhone 12"][n % 3]
    exif[0x0112] = (1, 6, 1, 8)[n % 4]
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = f"20{10 + n % 14}:{n % 12 + 1:02d}:{n % 28 + 1:02d} 12:{n % 60:02d}:00"
    sub[0x9011] = "+02:00"
    sub[0xA434] = "RF24-105mm F4 L IS USM"
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (48.0, 51.0, float(n % 60)), 3: "E", 4: (2.0, 17.0, 40.0)})
    return exif.tobytes()


def camera_files(folder: Path, count: int) -> list[Path]:
    """count JPEGs of one 4000x3000 picture, each with its own EXIF block in an APP1 segment."""
    import corpus

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"IMG_{n:05d}.jpg" for n in range(count)]
    if all(p.exists() for p in paths):
        return paths
    buffer = io.BytesIO()
    corpus.upright_picture(0).save(buffer, format="JPEG", quality=corpus.QUALITY)
    body = buffer.getvalue()
    assert body[:2] == b"\xff\xd8"
    for n, path in enumerate(paths):
        block = exif_block(n)
        payload = block if block.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + block
        path.write_bytes(body[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + body[2:])
    return paths


def io_counters() -> dict[str, int]:
    with open("/proc/self/io") as fh:
        return {k: int(v) for k, v in (line.split(": ") for line in fh)}


def evict(paths: list[Path]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


class NoModel:
    """Stands where the embedder would: a backfill that tried to embed would fail loudly."""

    name, dim, device, precision = "bench-model", 512, "cpu", "float32"

    def prepare(self, image):
        raise AssertionError("backfill must not prepare images")

    def encode_images(self, images):
        raise AssertionError("backfill must not embed")

    def encode_texts(self, texts):
        raise AssertionError("backfill must not embed")


def bench_backfill(out: Path, count: int, rounds: int) -> dict[str, object]:
    from imgd.daemon.config import load
    from imgd.daemon.ingest import imaging
    from imgd.daemon.service.library import open_library

    paths = camera_files(out / "exif-jpegs", count)
    file_mib = sum(p.stat().st_size for p in paths) / len(paths) / 2**20
    log(f"{count} JPEGs of {file_mib:.2f} MiB each")
    results: dict[str, list[float]] = {"warm": [], "cold": []}
    bytes_read: dict[str, float] = {}
    for round_no in range(rounds):
        for cache in ("warm", "cold"):
            state = out / "backfill-state"
            state.mkdir(exist_ok=True)
            for leftover in state.iterdir():
                leftover.unlink()
            conn = schema1(state / "catalog.db", 512)
            rng = np.random.default_rng(round_no)
            conn.execute("BEGIN")
            for n, path in enumerate(paths):
                info = path.stat()
                vector = rng.standard_normal(512).astype(np.float16).tobytes()
                conn.execute(
                    "INSERT INTO contents(id, hash, width, height, vector) VALUES (?, ?, 4000, 3000, ?)",
                    (n + 1, f"h{n}", vector),
                )
                conn.execute(
                    "INSERT INTO files(path, content_id, size, mtime_ns, status) VALUES (?, ?, ?, ?, 'ok')",
                    (os.fsencode(path), n + 1, info.st_size, info.st_mtime_ns),
                )
            conn.execute("COMMIT")
            conn.close()
            config = load(None, {"state_dir": state, "model": "bench-model"}, env={})
            lib = open_library(config, NoModel())
            try:
                if cache == "cold":
                    evict(paths)
                else:
                    common.warm_page_cache(paths)
                before = io_counters()
                started = time.perf_counter()
                tried = lib.engine.backfill_all_media()
                seconds = time.perf_counter() - started
                after = io_counters()
                assert tried == count and lib.catalog.media_backlog_count() == 0
                sample = lib.catalog.media_for([str(paths[1])])[str(paths[1])]
                assert sample.taken_source == "exif" and sample.make and (sample.width, sample.height) == (3000, 4000)
            finally:
                lib.close()
            rate = count / seconds
            results[cache].append(rate)
            bytes_read[f"{cache}_rchar_per_file"] = (after["rchar"] - before["rchar"]) / count
            bytes_read[f"{cache}_disk_bytes_per_file"] = (after["read_bytes"] - before["read_bytes"]) / count
            rchar = bytes_read[f"{cache}_rchar_per_file"] / 1024
            disk = bytes_read[f"{cache}_disk_bytes_per_file"] / 1024
            log(f"round {round_no + 1} {cache}: {rate:.0f} images/s; read() {rchar:.0f} KiB, disk {disk:.0f} KiB each")
    # What the same files cost read whole and decoded (draft-decoded, as indexing does), warm cache.
    sample = paths[: min(30, count)]
    common.warm_page_cache(sample)
    started = time.perf_counter()
    for path in sample:
        imaging.decode_with_meta(str(path), imaging.read_bytes(str(path)), 200_000_000)
    decode_rate = len(sample) / (time.perf_counter() - started)
    log(f"full read + draft decode, one thread, warm: {decode_rate:.1f} images/s")
    return {
        "files": count,
        "file_mib": round(file_mib, 2),
        "threads": os.cpu_count(),
        "warm_images_per_s": [round(r) for r in results["warm"]],
        "cold_images_per_s": [round(r) for r in results["cold"]],
        **{k: round(v) for k, v in bytes_read.items()},
        "decode_images_per_s_one_thread": round(decode_rate, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100_000, help="contents in the schema-1 catalog (default 100000)")
    parser.add_argument("--dim", type=int, default=512, help="vector dimensions (default 512, ViT-B/32)")
    parser.add_argument("--files", type=int, default=300, help="JPEGs with EXIF for the backfill (default 300)")
    parser.add_argument("--rounds", type=int, default=2, help="backfill rounds, warm and cold each (default 2)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    common.OUT.mkdir(parents=True, exist_ok=True)
    log(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    figures = {
        "load_before": round(os.getloadavg()[0], 2),
        "migrate": bench_migrate(common.OUT, args.images, args.dim),
        "backfill": bench_backfill(common.OUT, args.files, args.rounds),
        "load_after": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
