"""The training-step view: backward cost and memory of one step, per rank when sharded (``netscope step``)."""

from netscope.analyses.step.api import step

__all__ = ["step"]
