"""Generated gRPC modules (scripts/protos) and the .proto files they come from."""
