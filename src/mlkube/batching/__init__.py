"""Adaptive batching: pure merge/split and flush policy, and the async batcher around them."""
