"""gRPC next to REST: the Open Inference Protocol v2 service and TF Serving's Predict and
GetModelStatus, on their own port, sharing the replica's models, batcher, limits and metrics."""
