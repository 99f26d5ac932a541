"""Test: ``python -m spatial_restore.test -opt options/test/<task>.yml``; results go to ``./results/<name>``."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    from ._pipeline import run

    run("test", argv)


if __name__ == "__main__":
    from .cpu_memory import use_huge_pages

    use_huge_pages()  # before torch is imported; THP_MEM_ALLOC_ENABLE=0 opts out (spatial_restore/cpu_memory.py)
    main()
