"""Restore a batch of files: find inputs, plan safe outputs, process each, score against ground truth.

``process`` runs one image through stages that each own one thing: ``load_input`` (the file and the
noise added to it), the restorer (the network), ``save_output`` (the written file and what it holds),
``find_reference`` and ``score`` (ground truth and metrics), ``write_compare`` (the panels). Every
failure is caught per image and recorded as a one-line message, so one bad file never stops the
batch; results are plain dicts ready for the table and the JSON report.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..image_io import (IMAGE_SUFFIXES, ImageReadError, Picture, decode_like, encode_like, read_image, to_display_u8,
                        write_png)
from ..data.blur import blur_same
from ..noise import add_gaussian_noise

METRICS = ("psnr", "ssim", "lpips")
Log = Callable[[str], None]


@dataclass
class Job:
    """One requested input: where it is (if found) and where its outputs go."""

    source: str  # as the user named it (or as found in a folder)
    path: Path | None
    output: Path | None = None
    compare: Path | None = None
    error: str | None = None


@dataclass
class Options:
    """Per-image settings beyond the network."""

    gt: Path | None = None
    add_noise: float | None = None  # sigma on the 0..255 scale
    add_blur: np.ndarray | None = None  # a blur kernel, applied before the noise
    seed: int = 0
    compare: bool = False
    overwrite: bool = False
    lpips: bool = True
    stride: int = 8  # the network's size multiple, for the note on tiny images


def expand_inputs(patterns: Iterable[str], log: Log) -> list[Job]:
    """Files, folders (their image files, sorted) and globs -> jobs; what matches nothing becomes a failed job."""
    jobs: list[Job] = []
    seen: set[Path] = set()

    def add(source: str, path: Path) -> None:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            jobs.append(Job(source, path))

    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
            if len(images) < len(files):
                log(f"note: {pattern}: skipped {len(files) - len(images)} file(s) without an image extension")
            if not images:
                jobs.append(Job(pattern, None, error="folder contains no image files"))
            for p in images:
                add(str(p), p)
        elif path.is_file():
            add(pattern, path)
        elif glob.has_magic(pattern):
            matches = sorted(Path(m) for m in glob.glob(pattern) if Path(m).is_file())
            if not matches:
                jobs.append(Job(pattern, None, error="no file matches this pattern"))
            for p in matches:
                add(str(p), p)
        else:
            jobs.append(Job(pattern, None, error="no such file or folder"))
    return jobs


def plan_outputs(jobs: list[Job], outdir: Path, options: Options) -> None:
    """Name each job's outputs (<stem>.png, compare/<stem>.png); mark clashes and existing files as failures.

    Raises ValueError if the output folder is a folder an input comes from: outputs must never land
    among (or on) the inputs.
    """
    outdir = outdir.resolve()
    sources = {job.path.resolve() for job in jobs if job.path}
    if any(path.parent == outdir for path in sources):
        raise ValueError(f"output folder {outdir} holds input images; choose a separate folder so no input is overwritten")
    taken: dict[Path, str] = {}
    for job in jobs:
        if job.path is None:
            continue
        job.output = outdir / f"{job.path.stem}.png"
        job.compare = outdir / "compare" / f"{job.path.stem}.png" if options.compare else None
        for target in filter(None, (job.output, job.compare)):
            if target in sources:
                job.error = f"output {target} would overwrite an input"
            elif target in taken:
                job.error = f"output name {target.name} clashes with {taken[target]}; rename one of them"
            elif target.exists() and not options.overwrite:
                job.error = f"output {target} exists (pass --overwrite to replace it)"
            if job.error:
                break
            taken[target] = job.source


def find_gt(gt: Path, job: Job, single: bool) -> Path | None:
    """The ground truth for a job: ``gt`` itself if a file (single input), else the file in ``gt`` with the same stem."""
    if gt.is_file():
        return gt if single else None
    matches = sorted(p for p in gt.glob(f"{glob.escape(job.path.stem)}.*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return matches[0] if matches else None


def score(output: np.ndarray, reference: np.ndarray, with_lpips: bool) -> dict[str, float | None]:
    """PSNR/SSIM (and LPIPS if asked) of float images in [0, 1]."""
    from ..metrics import lpips_distance, psnr, ssim

    # SSIM's 11x11 Gaussian window needs at least 11 pixels on a side; below that it is undefined.
    defined = min(output.shape[:2]) >= 11
    result: dict[str, float | None] = {"psnr": psnr(output, reference, data_range=1.0),
                                       "ssim": ssim(output, reference, data_range=1.0) if defined else None,
                                       "lpips": None}
    if with_lpips:
        result["lpips"] = lpips_distance(output, reference, data_range=1.0)
    return result


def _load_gt(path: Path, picture: Picture) -> np.ndarray:
    gt = read_image(path)
    if gt.shape != picture.shape:
        raise ImageReadError(f"ground truth {path.name} is {gt.shape[1]}x{gt.shape[0]}, "
                             f"input is {picture.shape[1]}x{picture.shape[0]}")
    return picture.visible(gt.rgb)


def load_input(job: Job, options: Options) -> tuple[Picture, np.ndarray]:
    """The job's picture and what the network gets: its colour, blurred by --add-blur's kernel and with
    --add-noise's noise if asked."""
    picture = read_image(job.path)
    if min(picture.shape) < options.stride:
        picture.notes.append(f"{picture.shape[1]}x{picture.shape[0]} is smaller than the network stride; "
                             "edge-padded for the network and cropped back")
    rgb = picture.rgb if options.add_blur is None else blur_same(picture.rgb, options.add_blur)
    if options.add_noise:
        rgb = add_gaussian_noise(rgb, options.add_noise, options.seed)
    return picture, rgb


def save_output(job: Job, picture: Picture, restored: np.ndarray) -> np.ndarray:
    """Write the restored image in the input's form; returns what was written, as float (what metrics see)."""
    encoded = encode_like(picture, restored)
    job.output.parent.mkdir(parents=True, exist_ok=True)
    write_png(job.output, encoded)
    return decode_like(picture, encoded)


def process(job: Job, restore: Callable[[np.ndarray], np.ndarray], options: Options, single: bool,
            log: Log) -> dict[str, Any]:
    """Restore one job and write its outputs; returns its result record (never raises for the image's faults)."""
    record: dict[str, Any] = {"input": job.source, "output": None, "status": "error", "message": job.error}
    if job.error or job.path is None or job.output is None:
        return record
    start = time.perf_counter()
    try:
        picture, network_input = load_input(job, options)
        output = save_output(job, picture, restore(network_input))
    except ImageReadError as err:
        record["message"] = str(err)
        return record
    except Exception as err:  # a failure inside the network or on disk still must not stop the batch
        record["message"] = f"{type(err).__name__}: {err}"
        return record
    record.update(output=str(job.output), status="ok", message=None, seconds=round(time.perf_counter() - start, 3),
                  width=picture.shape[1], height=picture.shape[0], bit_depth=picture.bit_depth)
    for note in picture.notes:
        log(f"note: {job.source}: {note}")
    reference = find_reference(job, picture, options, single, log)
    if reference is not None:
        scored_output = score(output, reference, options.lpips)
        scored_input = score(picture.visible(network_input), reference, False)
        record.update(scored_output, psnr_input=scored_input["psnr"], ssim_input=scored_input["ssim"])
    if job.compare is not None:
        panels = [picture.visible(np.clip(network_input, 0, 1)), output] + ([reference] if reference is not None else [])
        write_compare(job.compare, panels)
    return record


def find_reference(job: Job, picture: Picture, options: Options, single: bool, log: Log) -> np.ndarray | None:
    """Ground truth from --gt, or the clean input when blur or noise was added; None (with a note) when unusable."""
    if options.gt is None:
        return picture.visible() if options.add_noise or options.add_blur is not None else None
    gt_path = find_gt(options.gt, job, single)
    if gt_path is None:
        log(f"note: {job.source}: no ground truth for it in {options.gt}; no metrics")
        return None
    try:
        return _load_gt(gt_path, picture)
    except ImageReadError as err:
        log(f"note: {job.source}: ground truth unusable ({err}); no metrics")
        return None


def write_compare(path: Path, panels: list[np.ndarray]) -> None:
    """Panels side by side with 8-pixel white gaps, as 8-bit RGB."""
    images = [to_display_u8(p) for p in panels]
    gap = np.full((images[0].shape[0], 8, 3), 255, np.uint8)
    row = [images[0]]
    for image in images[1:]:
        row += [gap, image]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path, np.concatenate(row, axis=1))


def mean_metrics(records: list[dict[str, Any]]) -> dict[str, float | None]:
    """Mean of each metric over the images that have it."""
    means: dict[str, float | None] = {}
    for key in ("psnr_input", "ssim_input", *METRICS):
        values = [r[key] for r in records if r.get(key) is not None]
        means[key] = float(np.mean(values)) if values else None
    return means


def format_table(records: list[dict[str, Any]], means: dict[str, float | None]) -> str:
    """A markdown table of per-image metrics plus the mean row."""
    cols = [("PSNR in", "psnr_input", "{:.2f}"), ("PSNR out", "psnr", "{:.2f}"), ("SSIM in", "ssim_input", "{:.4f}"),
            ("SSIM out", "ssim", "{:.4f}"), ("LPIPS out", "lpips", "{:.4f}")]

    def cells(row: dict[str, Any]) -> list[str]:
        return ["-" if row.get(key) is None else fmt.format(row[key]) for _, key, fmt in cols]

    lines = ["| image | " + " | ".join(c[0] for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    for r in records:
        if r["status"] == "ok":
            lines.append(f"| {Path(r['input']).name} | " + " | ".join(cells(r)) + " |")
    lines.append("| **mean** | " + " | ".join(cells(means)) + " |")
    return "\n".join(lines)
