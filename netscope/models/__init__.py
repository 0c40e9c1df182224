"""Model specs -> ``nn.Module`` plus the dummy input it expects.

``specs.resolve_model`` reads a spec (a bare torchvision name, ``pkg.mod:factory``, ``file.py:Class`` or a
registered ``prefix:name``); ``sources`` is the one registry of prefixed sources (``torchvision``, ``timm``,
``hf``), each in its own module, importing its library only when one of its specs is resolved.
"""
