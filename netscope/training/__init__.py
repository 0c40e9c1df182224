"""The training-step view: backward cost and memory of one step, per rank when sharded (``netscope step``)."""

from netscope.training.api import step

__all__ = ["step"]
