"""The training-step view: backward cost and memory of one step, per rank when sharded (``netscope step``).

``step`` is imported on first use, so the CLI can read the option registries (``options``) without torch."""

__all__ = ["step"]


def __getattr__(name: str):
    if name == "step":
        from netscope.analyses.step.api import step

        return step
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
