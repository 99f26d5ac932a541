"""Reading basicsr's training and test logs, for the ddp bench: iteration timestamps, rates, PSNR."""

from __future__ import annotations

import re
from datetime import datetime

# basicsr's training line: "<asctime> INFO: [<name[:5]>..][epoch:  0, iter:   1,200, lr:(2.000e-04,)] ...".
ITER_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO: \[[^\]]*\]"
                       r"\[epoch:\s*\d+, iter:\s*([\d,]+), lr:\(", re.MULTILINE)
RESUME_LINE = re.compile(r"Resuming training from epoch: \d+, iter: (\d+)\.")
PSNR_LINE = re.compile(r"Validation \S+\s+# psnr: (\S+)")
LOG_TIME = "%Y-%m-%d %H:%M:%S,%f"


def iteration_times(text: str) -> list[tuple[int, float]]:
    """(iteration, POSIX seconds) of each training line of a basicsr log.

    The line of iteration i is written right after its optimizer step, and every step ends with the
    loss ``.item()`` of ``reduce_loss_dict`` (a device sync), so the timestamp marks the step's end.
    """
    return [(int(it.replace(",", "")), datetime.strptime(stamp, LOG_TIME).timestamp())
            for stamp, it in ITER_LINE.findall(text)]


def steady_window(points: list[tuple[int, float]], start: int, end: int, warmup: int, global_batch: int) -> dict:
    """Images/s over iterations start+warmup+1 .. end: from the line of iteration start+warmup (the
    first after it if that one is missing) to the last line up to ``end``."""
    kept = [(i, t) for i, t in points if start + warmup <= i <= end]
    if len(kept) < 2:
        raise ValueError(f"fewer than two log lines in iterations {start + warmup}..{end} (warm-up {warmup}): "
                         "run more iterations or lower --warmup")
    (first, t0), (last, t1) = kept[0], kept[-1]
    if t1 <= t0:
        raise ValueError(f"iterations {first}..{last} share a millisecond timestamp: run more iterations")
    images = (last - first) * global_batch
    return {"from_iter": first, "to_iter": last, "seconds": round(t1 - t0, 3), "images": images,
            "images_per_s": images / (t1 - t0)}


def combined_rate(windows: list[dict]) -> float:
    """Images/s over several windows (the invocations of a resumed run), dead time between them excluded."""
    return sum(w["images"] for w in windows) / sum(w["seconds"] for w in windows)


def last_psnr(text: str) -> float:
    """The PSNR of the last ``Validation <set>`` block of a basicsr log."""
    values = PSNR_LINE.findall(text)
    if not values:
        raise ValueError("no 'Validation ... # psnr:' block in the log")
    return float(values[-1])


