"""Train: ``python -m spatial_restore.train -opt options/train/<task>.yml [--auto_resume] [--force_yml k:k=v]``.

Several GPUs: ``torchrun --nproc_per_node=N -m spatial_restore.train -opt ... --launcher pytorch``.
Experiments go to ``./experiments/<name>`` under the current directory.
"""

from __future__ import annotations

from ._pipeline import run


def main(argv: list[str] | None = None) -> None:
    run("train", argv)


if __name__ == "__main__":
    main()
