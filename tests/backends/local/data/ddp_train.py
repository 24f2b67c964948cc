"""A tiny data-parallel training run: linear regression with torch.distributed (gloo, CPU).

Every rank trains on its half of one fixed dataset; DDP averages the gradients, so N equal
shards take exactly the steps one process takes on the whole batch. Rank 0 writes the final
weights and the loss to MLKUBE_OUTPUT_DIR. ``KILL_RANK``/``KILL_ATTEMPTS`` make a worker
SIGKILL itself on its first attempts (to test gang restarts).
"""

import json
import os
import signal

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

STEPS = 30


def main() -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    attempt = int(os.environ.get("MLKUBE_JOB_ATTEMPT", "0"))
    if str(rank) == os.environ.get("KILL_RANK") and attempt < int(
        os.environ.get("KILL_ATTEMPTS", "1")
    ):
        os.kill(os.getpid(), signal.SIGKILL)
    if world > 1:
        dist.init_process_group("gloo")
    torch.manual_seed(0)
    inputs = torch.randn(64, 4)
    targets = inputs @ torch.tensor([[1.5], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(64, 1)
    linear = torch.nn.Linear(4, 1)
    model: torch.nn.Module = DistributedDataParallel(linear) if world > 1 else linear
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    mine, theirs = inputs[rank::world], targets[rank::world]
    loss = torch.tensor(0.0)
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(mine), theirs)
        loss.backward()
        optimizer.step()
    if rank == 0:
        out = os.environ["MLKUBE_OUTPUT_DIR"]
        weights = [float(v) for v in linear.weight.detach().flatten()]
        with open(os.path.join(out, "weights.json"), "w") as file:
            json.dump([*weights, float(linear.bias.detach())], file)
        with open(os.path.join(out, "metrics.json"), "w") as file:
            json.dump({"loss": float(loss), "steps": STEPS}, file)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
