"""The BBS compressed weight format (docs/format.md).

* :func:`encode` / :func:`decode` -- one pruned tensor <-> :class:`EncodedTensor`;
  :func:`encode_plain` for unpruned integer tensors.
* :func:`save_encoded` / :func:`load_encoded` -- the ``*.bbs.safetensors`` container
  (:class:`EncodedModel`), validated on read.
* :func:`encode_checkpoint` / :func:`encode_checkpoint_file` -- from the pipeline's
  ``pruned.safetensors``; :func:`to_pruned_checkpoint` back.
* :func:`load_model_` / :func:`load_state_dict` -- run a model from the encoded file.
* :func:`stream_prune` -- prune + encode a sharded HuggingFace checkpoint tensor by tensor into sharded
  BBS files; :class:`ShardedEncodedModel` / :func:`open_encoded` read them lazily.
* :func:`pe_matmul` -- bit-exact functional model of the BitVert PE on encoded columns.
"""

from bitvert.codec.checkpoint import encode_checkpoint, encode_checkpoint_file, encode_report, to_pruned_checkpoint
from bitvert.codec.container import EncodedModel, file_accounting, load_encoded, save_encoded
from bitvert.codec.layout import FORMAT_NAME, FORMAT_VERSION, Chunk, TensorLayout
from bitvert.codec.pe_model import PEResult, pe_matmul, reference_matmul
from bitvert.codec.tensor import EncodedTensor, decode, encode, encode_plain
from bitvert.codec.stream import ShardedEncodedModel, open_encoded, stream_prune
from bitvert.codec.torch_load import load_model_, load_state_dict

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Chunk",
    "TensorLayout",
    "EncodedTensor",
    "encode",
    "encode_plain",
    "decode",
    "EncodedModel",
    "save_encoded",
    "load_encoded",
    "file_accounting",
    "encode_checkpoint",
    "encode_report",
    "encode_checkpoint_file",
    "to_pruned_checkpoint",
    "load_model_",
    "load_state_dict",
    "stream_prune",
    "ShardedEncodedModel",
    "open_encoded",
    "PEResult",
    "pe_matmul",
    "reference_matmul",
]
