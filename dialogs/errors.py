"""The one root of salescoach's own errors, and the few kinds the front ends tell apart."""

from __future__ import annotations


class CoachError(Exception):
    """Root of every error salescoach raises on purpose."""


class FlowError(CoachError):
    """A flow or catalog file that cannot work; the message names file, step and problem."""


class StaleState(CoachError):
    """Another input already advanced this dialog; the one that lost must not apply."""
