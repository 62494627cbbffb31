"""Freed memory stays in the process for reuse (glibc only)."""

from __future__ import annotations


def test_freed_memory_is_kept_for_reuse_on_glibc():
    import platform

    from analysis.allocator import reuse_freed_memory

    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert reuse_freed_memory() is glibc
