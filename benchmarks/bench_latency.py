"""Time from a file being closed in a watched folder to it being searchable through the daemon.

Writes photos one at a time (each closed at t0), then polls the catalog (read-only, cheap) until the
file's row is committed with a vector (t1); the daemon adds it to the in-memory index right after the
commit. At the end every file is searched by itself through the daemon to confirm it comes back first.

    .venv/bin/python benchmarks/bench_latency.py --files 20 [--model vit-b-32|tiny]
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from clipkit import build_clip  # noqa: E402
from conftest import picture  # noqa: E402
from imgd.daemon.api import client  # noqa: E402
from imgd.daemon.errors import ImgdError  # noqa: E402
from imgd.daemon.paths import default_socket  # noqa: E402
from imgd.daemon.store.catalog import Catalog  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--size", choices=["vit-b-32", "tiny"], default="vit-b-32")
    parser.add_argument("--settle", type=float, default=None, help="IMGD_SETTLE_SECONDS (default: imgd's)")
    args = parser.parse_args()
    model = build_clip(ROOT / "benchmarks" / "out" / args.size, size=args.size)
    imgd = str(Path(sys.executable).with_name("imgd"))
    with tempfile.TemporaryDirectory(prefix="imgd-bench-latency-") as tmp:
        tmp_path = Path(tmp)
        pics, state = tmp_path / "pics", tmp_path / "state"
        pics.mkdir()
        env = {
            **os.environ,
            "IMGD_STATE_DIR": str(state),
            "IMGD_MODEL": str(model),
            "XDG_RUNTIME_DIR": str(tmp_path / "run"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "HF_HUB_OFFLINE": "1",
        }
        if args.settle is not None:
            env["IMGD_SETTLE_SECONDS"] = str(args.settle)
        sock = default_socket(state, env["XDG_RUNTIME_DIR"])  # the daemon's, as imgd names it
        log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115
        daemon = subprocess.Popen([imgd, "run", str(pics)], env=env, stdout=log, stderr=subprocess.STDOUT)
        latencies = []
        try:
            while True:
                try:
                    if client.status(sock)["daemon"]["state"] == "idle":
                        break
                except ImgdError:
                    pass
                if daemon.poll() is not None:
                    raise SystemExit((tmp_path / "daemon.log").read_text())
                time.sleep(0.5)
            catalog = Catalog(state / "catalog.db", readonly=True)
            for i in range(args.files):
                buffer = io.BytesIO()
                picture(5000 + i, (1600, 1200)).save(buffer, format="JPEG", quality=90)
                path = pics / f"photo{i:03d}.jpg"
                with open(path, "wb") as fh:
                    fh.write(buffer.getvalue())
                t0 = time.perf_counter()  # closed
                while True:
                    record = catalog.get_file(str(path))
                    if record is not None and record.content_id is not None:
                        break
                    time.sleep(0.01)
                latencies.append(time.perf_counter() - t0)
                time.sleep(0.3)
            catalog.close()
            found = sum(
                client.search(sock, 1, image=str(pics / f"photo{i:03d}.jpg"))[0]["path"].endswith(f"photo{i:03d}.jpg")
                for i in range(args.files)
            )
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(60)
            log.close()
    settle = args.settle if args.settle is not None else "default"
    print(f"model {args.size}, settle_seconds {settle}, {args.files} files of 1600x1200 JPEG, one at a time")
    print(
        f"closed -> searchable: median {statistics.median(latencies):.2f} s, "
        f"worst {max(latencies):.2f} s, best {min(latencies):.2f} s"
    )
    print(f"each file found itself first through the daemon: {found}/{args.files}")


if __name__ == "__main__":
    main()
