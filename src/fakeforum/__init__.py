"""fakeforum: a fake web forum over real HTTP, with seeded content, latency and counters."""

from __future__ import annotations

from .app import create_app
from .core import ServerError
from .errors import FakeForumError
from .latency import Fixed, LatencyRules, LogNormal, Normal, Uniform, parse_latency
from .model import Board, Forum, Reply, Subject
from .server import FakeForumServer
from .stats import RouteStats, Stats

__all__ = [
    "Board",
    "FakeForumError",
    "FakeForumServer",
    "Fixed",
    "Forum",
    "LatencyRules",
    "LogNormal",
    "Normal",
    "Reply",
    "RouteStats",
    "ServerError",
    "Stats",
    "Subject",
    "Uniform",
    "create_app",
    "parse_latency",
]

__version__ = "0.1.0.dev0"
