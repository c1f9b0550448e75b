"""The inference allocator setting really changes where glibc serves a forward's few-MB blocks from.

Each check runs in a fresh interpreter: the setting is process-wide and cannot be undone in this one."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or tuple(map(int, platform.libc_ver()[1].split(".")[:2])) < (2, 33),
                                reason="glibc malloc only; mallinfo2 (the probe) needs glibc 2.33+")

PROBE = textwrap.dedent("""
    import ctypes, json
    from trainforge.allocator import keep_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallinfo2.restype = MallInfo2
    SIZE = 4 << 20  # one activation tensor of a batch-32 forward

    def cycle():
        ptr = libc.malloc(SIZE)
        mmapped = libc.mallinfo2().hblkhd  # bytes currently held in mmap()ed blocks
        libc.free(ptr)
        return {"mmapped_while_held": mmapped, "free_heap_after": libc.mallinfo2().fordblks}

    before = cycle()
    on = keep_freed_memory()
    print(json.dumps({"on": on, "again": keep_freed_memory(), "before": before, "after": cycle()}))
""")


def probe(env_extra: dict[str, str]) -> dict:
    import json

    out = subprocess.run([sys.executable, "-c", PROBE], env=os.environ | env_extra, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def test_blocks_come_from_the_heap_and_stay_there():
    r = probe({})
    assert r["on"] and r["again"]
    assert r["before"]["mmapped_while_held"] >= 4 << 20  # glibc's default: a fresh mmap per 4 MB block
    assert r["after"]["mmapped_while_held"] < 4 << 20  # now served from the heap…
    assert r["after"]["free_heap_after"] >= 4 << 20  # …and kept there after free, ready for the next batch


def test_opt_out_leaves_malloc_alone():
    r = probe({"TRAINFORGE_KEEP_FREED_MEMORY": "0"})
    assert not r["on"] and not r["again"]
