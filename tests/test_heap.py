"""The serving process keeps the memory a click frees for the next click (``segdemo.heap``)."""

import platform
import subprocess
import sys
import textwrap

import pytest

# A click's worth of buffers (8 × 4 MiB), allocated, touched and freed three times, each time
# in a new thread: the page faults of the later rounds. In a process of its own, so that this
# suite's own malloc is left alone.
ROUNDS = textwrap.dedent(
    """
    import resource, sys, threading
    import numpy as np
    {setup}
    faults = []

    def click():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        buffers = [np.ones(4 << 20, np.uint8) for _ in range(8)]
        del buffers
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

    for _ in range(3):  # each in a thread of its own, as the server's requests come
        thread = threading.Thread(target=click)
        thread.start()
        thread.join()
    print(faults[1] + faults[2])
    """
)


def later_rounds_faults(setup: str) -> int:
    script = ROUNDS.format(setup=setup)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


GLIBC = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's setting"
)


@GLIBC
def test_memory_a_click_freed_is_reused_without_faulting_its_pages_in_again():
    kept = later_rounds_faults(
        "from segdemo.heap import keep_freed_memory\nassert keep_freed_memory()"
    )
    # 64 MiB of pages, touched twice: thousands of faults if they were handed back.
    assert kept < 200, f"{kept} page faults for memory freed and allocated again"


@GLIBC
def test_the_app_keeps_the_memory_its_clicks_free():
    kept = later_rounds_faults("import app\napp.build_app()")
    assert kept < 200, f"{kept} page faults for memory freed and allocated again"
