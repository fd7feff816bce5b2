"""shardsync: DiLoCo / Streaming DiLoCo outer steps as ResourceSync resources.

The compiled extension ``shardsync._bridge`` holds the C++ library (payload codecs, and the
bridge's protocol and background thread); this package adds the PyTorch glue.
"""

from shardsync._bridge import (  # noqa: F401
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
from shardsync.diloco import DiLoCoBridge, layers_of  # noqa: F401,E402
