"""Repo-level pytest setup: nothing here is needed by users of the plugin."""

from __future__ import annotations

pytest_plugins = ["pytester"]
