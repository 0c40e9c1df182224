"""Everything at the level of one aten operator: multiply-add formulas (``registry``: the public
``register_macs``/``ignore_macs`` over torch's ``flop_counter``; ``formulas``: netscope's own), the
per-operator breakdown, quantized modules' packed weights, and conv/pool windows as the kernel ran them."""


def __getattr__(name: str):
    from netscope import submodule

    return submodule(__name__, name)
