"""What a failed forward's exception is about when it is a dtype, not a size: told once from torch's message, for
the error's advice (``run.trace``) and the diagnosis, which then searches no input sizes (none would help)."""

from __future__ import annotations

import re
from typing import Optional

# an index or mask of the wrong dtype (a float mask into masked_fill/where, float indices into gather/indexing)
_INDEX_OR_MASK_DTYPE = re.compile(
    r"only supports boolean masks|expected BoolTensor for mask|expected condition to be a boolean tensor|"
    r"Expected dtype int32(/| or )int64 for index|used as indices must be long|expected target dtype|"
    r"Expected attn_mask dtype|only implemented on integer and Boolean", re.IGNORECASE)

# operands of different dtypes (a float64 input into float32 weights, floats into an embedding)
_OPERAND_DTYPES = re.compile(r"same dtype|scalar type|Input type \(.*\) and (weight|bias) type|to have one of the "
                             r"following scalar types|dtype mismatch", re.IGNORECASE)

INDEX_OR_MASK_ADVICE = ("An index or mask tensor has the wrong dtype (indices int64, masks bool), which no input size "
                        "changes: if it is one of the inputs, give its dtype (--input NAME=SHAPE:int64 or :bool on the "
                        "command line, input_data in the API); if the forward computes it, the model's code must "
                        "convert it")
OPERAND_ADVICE = ("Check the inputs' dtypes against the layer's (dtype=/input_dtypes= in the API, --dtype and "
                  "--input on the command line)")


def dtype_advice(error: BaseException) -> Optional[str]:
    """What to do when ``error`` says a tensor has the wrong dtype; None when it says nothing about dtypes."""
    text = str(error)
    if _INDEX_OR_MASK_DTYPE.search(text):
        return INDEX_OR_MASK_ADVICE
    if _OPERAND_DTYPES.search(text):
        return OPERAND_ADVICE
    return None
