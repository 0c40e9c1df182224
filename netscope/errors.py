"""Errors a user can cause. The CLI turns each into one paragraph on stderr and its exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FINDINGS = 1  # a check ran and found problems (formula mismatch, coverage below threshold)
EXIT_USAGE = 2  # bad arguments, unknown model, unreadable file: the user must change the command
EXIT_MODEL_FAILED = 3  # the model's own forward pass raised on the dummy input
EXIT_INTERRUPTED = 130


class NetscopeError(Exception):
    """Base class: `str(err)` is a complete message that says what was wrong and how to fix it."""

    exit_code = EXIT_USAGE


class UsageError(NetscopeError):
    """A command-line option or API argument has a value netscope cannot use."""


class OperatorRegistryError(UsageError, ValueError):
    """``register_macs`` / ``ignore_macs`` refused an entry: an operator PyTorch does not have (the message names the
    nearest ones and how to list them), a name without its namespace, a duplicate or a contradiction. Also a
    ``ValueError``, as these refusals were before."""


class ModelSpecError(NetscopeError):
    """A model name, import string or file path could not be turned into an nn.Module."""


class InputSpecError(NetscopeError):
    """An input shape, dtype or device specification is malformed or unusable."""


class DependencyError(NetscopeError):
    """An optional dependency is missing; the message names the extra to install."""


class CheckpointError(NetscopeError):
    """A checkpoint file is missing, unreadable, unsafe to unpickle, or not a checkpoint."""


class StateDictError(NetscopeError):
    """The model's own ``state_dict()`` (a hook or override in it) raised: the naming audit reads its keys."""

    exit_code = EXIT_MODEL_FAILED


class ForwardError(NetscopeError):
    """The model's forward pass raised; the message names the layer that was running."""

    exit_code = EXIT_MODEL_FAILED

    def __init__(self, message: str, *, original: BaseException | None = None, layer=None, diagnosis=None):
        super().__init__(message)
        self.original = original
        self.layer = layer  # qualified name of the innermost module running when it failed
        self.diagnosis = diagnosis  # optional netscope.analyses.checks diagnosis record
        self.report = None  # summary: the Report of what ran before the failure (rows up to the failing call), if any


class OutOfMemory(ForwardError):
    """The input (or the pass on it) does not fit in the device's memory: the user must change the command
    (a smaller input, or ``--device meta``)."""

    exit_code = EXIT_USAGE


class MetaDeviceError(ForwardError):
    """The meta device (and fake tensors) cannot run an operator of the model; the message names it."""

    exit_code = EXIT_USAGE


class MacFormulaError(ForwardError):
    """A registered multiply-add formula raised, or returned something other than a whole number >= 0: a bug in
    the formula (``netscope.register_macs``), not in the model."""

    exit_code = EXIT_USAGE
