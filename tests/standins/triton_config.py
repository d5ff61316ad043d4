"""Reads a ``config.pbtxt`` the way Triton does, for tests: Triton's own ModelConfig protobuf schema (shipped in
``tritonclient[grpc]``, a test-only dependency). The product writes configs but never parses them with it."""

from __future__ import annotations

from cvtriton_triton.errors import UserError


def parse_config(text: str) -> dict:
    """Parse config.pbtxt with Triton's own ModelConfig schema (shipped in tritonclient[grpc], a test-only
    dependency) into a dict (field names as in the .proto; dims as ints). Unknown fields -> UserError."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    try:
        message = text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise UserError(f"config.pbtxt is not a valid Triton model config: {exc}", "fix or re-create it") from None
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    data.setdefault("max_batch_size", 0)      # proto3 omits zero values; 0 is meaningful here
    for key in ("input", "output"):
        for tensor in data.get(key, []):
            tensor["dims"] = [int(d) for d in tensor.get("dims", [])]
    return data
