"""What the web app does with one uploaded file, without a server: check it, restore it, say how it went.

Kept free of Gradio so it can be tested directly; ``ui.py`` only turns ``RestoreError`` into a message on
the page and ``Result`` into components.
"""

from __future__ import annotations

import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import engine

MAX_PIXELS = 4096 * 4096  # default upload limit (16.8 megapixels): about 20 minutes of CPU time per photo
MAX_SIGMA = 255.0  # 'add noise' sigma on the 0-255 scale
SEED = 0  # the CLI's default --seed: the same noise for the same photo, here as there

Progress = Callable[[int, int], None]  # (network passes done, passes in all)


class RestoreError(ValueError):
    """A file or setting the app refuses; the message is one line for the page."""


@dataclass(frozen=True)
class Result:
    """One restored upload: the PNG as the CLI writes it and an 8-bit picture of the network's input."""

    name: str  # the uploaded file's name
    output: Path  # restored PNG: the input's bit depth, grey or colour, and alpha
    before: Path  # 8-bit PNG of what the network was given (the upload, blurred and noised if asked)
    model: str
    sigma: float
    blur: str | None  # an --add-blur spec, or None
    width: int
    height: int
    seconds: float
    psnr_input: float | None  # only with blur or sigma > 0: against the clean upload
    psnr: float | None
    notes: tuple[str, ...]

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (the API's second output)."""
        return {"name": self.name, "model": self.model, "sigma": self.sigma, "blur": self.blur, "width": self.width,
                "height": self.height, "seconds": self.seconds, "psnr_input": self.psnr_input, "psnr": self.psnr,
                "notes": list(self.notes)}


def header_size(path: Path, max_pixels: int) -> tuple[int, int] | None:
    """(width, height) from the file's header, before anything is decoded; raises RestoreError above
    ``max_pixels``. None when Pillow cannot tell (the library's reader then says what is wrong)."""
    from PIL import Image

    too_large = f"over this app's limit of {max_pixels:,} pixels (start it with --max-pixels to raise it)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                width, height = image.size
        except Image.DecompressionBombError as err:  # Pillow's own limit, far above ours
            raise RestoreError(f"{path.name}: {err}; {too_large}") from err
        except Exception:
            return None
    if width * height > max_pixels:
        raise RestoreError(f"{path.name}: {width}x{height} is {width * height:,} pixels, {too_large}")
    return width, height


class PhotoRestorer:
    """Loads each model once (on first use) and restores uploads into its own working folder."""

    def __init__(self, workdir: Path, device: str = "auto", max_pixels: int = MAX_PIXELS) -> None:
        if max_pixels < 1:
            raise ValueError(f"max_pixels must be at least 1, got {max_pixels}")
        self.workdir = Path(workdir)
        self.device = engine.pick_device(device)
        self.max_pixels = max_pixels
        self.models = engine.model_names()
        self._loaded: dict[str, engine.Model] = {}
        self._lock = threading.Lock()  # one restore at a time: a model counts passes for one caller

    def restore(self, path: str | Path, model: str = "default", sigma: float | None = 0.0,
                progress: Progress | None = None, blur: str | None = None) -> Result:
        """Restore one file; raises RestoreError with a one-line reason for anything it cannot do.

        ``blur`` (an ``inference.py --add-blur`` spec; None, "" or "none": no blur) and ``sigma`` degrade
        the file first, as the CLI's options do, to try a model on a clean photo."""
        source = Path(path)
        sigma = float(sigma or 0.0)
        if not 0.0 <= sigma <= MAX_SIGMA:
            raise RestoreError(f"noise sigma must be between 0 and {MAX_SIGMA:g}, got {sigma:g}")
        blur = None if (blur or "none").strip().lower() == "none" else blur.strip()
        try:
            kernel = None if blur is None else engine.kernel_from_spec(blur, SEED)  # the CLI's --add-blur kernel
        except ValueError as err:
            raise RestoreError(str(err)) from err
        if not source.is_file():
            raise RestoreError(f"{source.name}: no such file")
        size = header_size(source, self.max_pixels)
        with self._lock:
            network = self.model(model)
            folder = Path(tempfile.mkdtemp(prefix="restore-", dir=self.workdir))
            output, before = folder / f"{source.stem}.png", folder / f"{source.stem}_input.png"
            total = network.passes(size[1], size[0]) if size else 1  # unknown size: one step
            start = time.perf_counter()
            record, notes = engine.restore_file(network, source, output, sigma, SEED, progress, total, kernel)
            if record["status"] != "ok":
                raise RestoreError(f"{source.name}: {record['message']}")
            engine.write_preview(source, sigma, SEED, before, kernel)
        return Result(name=source.name, output=output, before=before, model=model, sigma=sigma, blur=blur,
                      width=record["width"], height=record["height"],
                      seconds=round(time.perf_counter() - start, 2), psnr_input=record.get("psnr_input"),
                      psnr=record.get("psnr"), notes=tuple(notes))

    def model(self, name: str) -> engine.Model:
        """The loaded model ``name`` (loaded on first use)."""
        if name not in self.models:
            raise RestoreError(f"unknown model {name!r}; available: {', '.join(self.models)}")
        if name not in self._loaded:
            try:
                self._loaded[name] = engine.load(name, self.device)
            except Exception as err:  # a missing or broken shipped model: its one-line reason
                raise RestoreError(f"model {name!r} cannot be loaded: {err}") from err
        return self._loaded[name]
