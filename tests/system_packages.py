"""Debian packages some tests need (a PostgreSQL server, Chromium): installed on first use when
the tests run as root on a Debian machine, as on a fresh CI machine, so that the README's one test
command is all a newcomer runs. Elsewhere the tests say what to install."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading

log = logging.getLogger(__name__)
_lock = threading.Lock()
_tried: set[tuple[str, ...]] = set()


def install(*packages: str) -> bool:
    """Try once per session to ``apt-get install`` the packages; whether it ran and succeeded."""
    with _lock:
        if packages in _tried:
            return False
        _tried.add(packages)
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            return False
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        log.warning("installing Debian packages for the tests: %s", " ".join(packages))
        try:
            subprocess.run(
                ["apt-get", "update", "-qq"], env=env, check=True, timeout=600, capture_output=True
            )
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", *packages],
                env=env,
                check=True,
                timeout=900,
                capture_output=True,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            log.warning("could not install %s: %s", " ".join(packages), exc)
            return False
        return True
