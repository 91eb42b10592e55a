"""tests/npm_packages.py decides when to run ``npm ci``: only when a locked package is missing or at
another version, never through a link to another checkout's install, and says why when it cannot.
(The install itself runs in the interop tests, on a machine whose tests/interop has no
node_modules, as on a fresh clone.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests import npm_packages


def _project(root: Path, installed: dict[str, str]) -> Path:
    root.mkdir()
    lock = {
        "name": "p",
        "lockfileVersion": 3,
        "packages": {
            "": {"name": "p"},
            "node_modules/a": {"version": "1.0.0"},
            "node_modules/@s/b": {"version": "2.0.0"},
            "node_modules/c-darwin": {"version": "3.0.0", "optional": True},
        },
    }
    (root / "package-lock.json").write_text(json.dumps(lock))
    for name, version in installed.items():
        (root / "node_modules" / name).mkdir(parents=True)
        manifest = {"name": name, "version": version}
        (root / "node_modules" / name / "package.json").write_text(json.dumps(manifest))
    return root


def test_stale_names_missing_and_other_versions_not_optional_ones(tmp_path):
    assert npm_packages.stale(_project(tmp_path / "x", {"a": "1.0.0", "@s/b": "2.0.0"})) == []
    assert npm_packages.stale(_project(tmp_path / "y", {"a": "1.0.0"})) == ["@s/b"]
    assert npm_packages.stale(_project(tmp_path / "z", {"a": "0.9.0", "@s/b": "2.0.0"})) == ["a"]


def test_an_installed_lock_runs_no_npm(tmp_path, monkeypatch):
    monkeypatch.setattr(npm_packages.subprocess, "run", _no_subprocess)
    assert npm_packages.ensure(_project(tmp_path / "x", {"a": "1.0.0", "@s/b": "2.0.0"})) is None


def test_a_link_to_another_install_is_never_emptied_by_npm_ci(tmp_path, monkeypatch):
    monkeypatch.setattr(npm_packages.subprocess, "run", _no_subprocess)
    other = _project(tmp_path / "other", {"a": "1.0.0"})
    project = _project(tmp_path / "p", {})
    (project / "node_modules").symlink_to(other / "node_modules")
    why = npm_packages.ensure(project)
    assert why is not None and "link" in why
    assert (other / "node_modules" / "a" / "package.json").exists()


def test_without_npm_it_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(npm_packages.subprocess, "run", _no_subprocess)
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    from tests import system_packages

    monkeypatch.setattr(system_packages, "install", lambda *packages: False)
    why = npm_packages.ensure(_project(tmp_path / "p", {}))
    assert why is not None and why.startswith("npm is not installed") and "npm ci" in why
    # Once a session: the second call answers the same without trying again.
    assert npm_packages.ensure(tmp_path / "p") == why


def _no_subprocess(*args, **kwargs):
    pytest.fail(f"ran {args}")
