"""Prometheus metrics, one registry per application (never the process-wide default).

A registry per app keeps tests independent and lets several apps live in one process; the
composition root creates one `Metrics` and hands it to the front ends and to the web app.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

# A turn is a database round trip plus rendering: milliseconds normally, seconds when slow.
TURN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The counters and histograms salescoach exports on `GET /metrics`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.turns_total = Counter(
            "salescoach_turns",
            "Conversation turns handled, by front end and outcome.",
            ["front_end", "outcome"],
            registry=self.registry,
        )
        self.turn_seconds = Histogram(
            "salescoach_turn_seconds",
            "Time to handle one turn, from inbound message to committed reply.",
            ["front_end"],
            buckets=TURN_BUCKETS,
            registry=self.registry,
        )
        self.dialogs_started_total = Counter(
            "salescoach_dialogs_started",
            "Dialogs started, by flow.",
            ["flow"],
            registry=self.registry,
        )
        self.dialogs_completed_total = Counter(
            "salescoach_dialogs_completed",
            "Dialogs completed, by flow.",
            ["flow"],
            registry=self.registry,
        )
        self.errors_total = Counter(
            "salescoach_errors",
            "Errors turned into a reply or dropped, by front end and kind.",
            ["front_end", "kind"],
            registry=self.registry,
        )

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of this registry and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
