"""``python -m spatial_restore.app``: serve the restore page on this machine (127.0.0.1:7860 by default).

Exit codes: 0 after a clean stop (Ctrl-C); 2 when nothing was served (bad options, no such device,
the port taken).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .restore import MAX_PIXELS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m spatial_restore.app",
        description="A local web page to restore photos with the shipped models (before/after, PNG download) "
                    "and an API for programs (gradio_client, endpoint /restore). Private: it binds to this "
                    "machine only by default, makes no share link and sends no analytics.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; 0.0.0.0 would open it to the network (default: %(default)s)")
    parser.add_argument("--port", type=int, default=7860, help="default: %(default)s")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: %(default)s")
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS, metavar="N",
                        help="refuse images of more than N pixels (width x height), with a message on the page "
                             "(default: %(default)s, 4096x4096)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port must be in 1-65535, got {args.port}")
    if args.max_pixels < 1:
        parser.error("--max-pixels must be at least 1")
    from . import engine
    from .restore import PhotoRestorer
    from .ui import build, launch

    engine.prepare_process()
    with tempfile.TemporaryDirectory(prefix="spatial_restore_app_") as workdir:  # results; removed on exit
        try:
            restorer = PhotoRestorer(Path(workdir), args.device, args.max_pixels)
            launch(build(restorer), args.host, args.port, Path(workdir))
        except (OSError, RuntimeError) as err:  # no such device, port taken
            print(f"error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
