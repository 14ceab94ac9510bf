"""The BBS compressed weight format (docs/format.md).

* :func:`encode` / :func:`decode` -- one pruned tensor <-> :class:`EncodedTensor`;
  :func:`encode_plain` for unpruned integer tensors.
"""

from bitvert.codec.layout import FORMAT_NAME, FORMAT_VERSION, Chunk, TensorLayout
from bitvert.codec.tensor import EncodedTensor, decode, encode, encode_plain

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Chunk",
    "TensorLayout",
    "EncodedTensor",
    "encode",
    "encode_plain",
    "decode",
]
