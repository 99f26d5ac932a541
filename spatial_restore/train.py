"""Train: ``python -m spatial_restore.train -opt options/train/<task>.yml [--auto_resume] [--force_yml k:k=v]``.

Several GPUs: ``torchrun --nproc_per_node=N -m spatial_restore.train -opt ... --launcher pytorch``.
Experiments go to ``./experiments/<name>`` under the current directory.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    from ._pipeline import run

    run("train", argv)


if __name__ == "__main__":
    from .cpu_memory import use_huge_pages

    use_huge_pages()  # before torch is imported; THP_MEM_ALLOC_ENABLE=0 opts out (spatial_restore/cpu_memory.py)
    main()
