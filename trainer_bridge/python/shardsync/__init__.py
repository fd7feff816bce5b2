"""shardsync: DiLoCo / Streaming DiLoCo outer steps as ResourceSync resources.

The compiled extension ``shardsync._bridge`` holds the C++ library (the payload codecs, and the
bridge's protocol with its background thread); this package adds the PyTorch glue
(``DiLoCoBridge``, in diloco.py). Importing it needs numpy, not torch.
"""

from shardsync._bridge import (
    FRAGMENT_FORMAT,
    Error,
    bf16_bits,
    bf16_values,
    decode_payload,
    dequantize_fp4_e3m0,
    dequantize_int8,
    encode_payload,
    quantize_dequantize,
    quantize_fp4_e3m0,
    quantize_int8,
)
from shardsync.diloco import DiLoCoBridge, layers_of

__all__ = [
    "FRAGMENT_FORMAT", "Error", "bf16_bits", "bf16_values", "decode_payload",
    "dequantize_fp4_e3m0", "dequantize_int8", "encode_payload", "quantize_dequantize",
    "quantize_fp4_e3m0", "quantize_int8", "DiLoCoBridge", "layers_of",
]
