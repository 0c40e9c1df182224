"""State_dict naming audit: where every key comes from, and what is wrong with it.

``audit_names(model)`` walks the module tree the way ``state_dict`` does (no forward pass), labels
each key segment with its origin, and reports aliases, unregistered modules and parameters, wrapper
prefixes, unsaved tensors, deep numbered Sequential paths and tied weights.
"""

from netscope.naming.audit import audit_names
from netscope.naming.identity import tensor_identity
from netscope.naming.report import NameEntry, NamingReport, NamingTotals
from netscope.naming.segments import Segment

__all__ = ["audit_names", "tensor_identity", "NameEntry", "NamingReport", "NamingTotals", "Segment"]
