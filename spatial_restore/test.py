"""Test: ``python -m spatial_restore.test -opt options/test/<task>.yml``; results go to ``./results/<name>``."""

from __future__ import annotations

from ._pipeline import run


def main(argv: list[str] | None = None) -> None:
    run("test", argv)


if __name__ == "__main__":
    main()
