"""A guard for calls that must not hang (a FIFO or device given as a media file): shared by
tests/encoders/test_image_io.py and tests/encoders/test_audio_io.py."""

from __future__ import annotations

import os
import threading

import pytest


def within(fn, seconds: float = 20.0, fifos=()):
    """``fn()`` in a thread: its exception (None when it returned). Fails, instead of hanging the
    suite, when it is still running after ``seconds`` (a blocked open of a FIFO is then released by
    opening each of ``fifos`` for writing)."""
    out = {}

    def run():
        try:
            fn()
            out["error"] = None
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        for fifo in fifos:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # the blocked reader gets EOF
        pytest.fail(f"still running after {seconds} s: it hangs on a non-regular file")
    return out["error"]
