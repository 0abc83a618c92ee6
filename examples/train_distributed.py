"""Train on several processes with torch.distributed: each rank reads disjoint windows.

    torchrun --nproc_per_node 2 examples/train_distributed.py STORE [--epochs 2]

Every rank builds the same AACSegmentDataset (windows are a pure function of seed, epoch
and index); a DistributedSampler gives each rank its own share of the indices, and the
model's gradients are averaged by DistributedDataParallel (gloo, so CPUs are enough).
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

import aacdata


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", help="store path or URL (give several as a comma-separated list)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--window-seconds", type=float, default=0.5)
    parser.add_argument("--num-workers", type=int, default=1)
    args = parser.parse_args(argv)

    dist.init_process_group("gloo")  # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
    rank, world = dist.get_rank(), dist.get_world_size()
    stores = args.store.split(",")
    probe = aacdata.AACStore.open(stores[0])
    rate = probe.summary()["sample_rates"][0]
    probe.close()
    dataset = aacdata.AACSegmentDataset(
        stores, window_seconds=args.window_seconds, sample_rate=rate, num_channels=1, num_windows=256, seed=0
    )
    sampler = DistributedSampler(dataset, shuffle=True, seed=0, drop_last=True)
    loader = DataLoader(dataset, batch_size=16, sampler=sampler, num_workers=args.num_workers)
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Conv1d(1, 4, 64, stride=32), nn.ReLU(), nn.Flatten()))
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-3)
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)  # shuffles which rank reads which windows
        dataset.set_epoch(epoch)  # draws new windows
        count, total = 0, 0.0
        for batch in loader:
            loss = model(batch).pow(2).mean()  # a stand-in objective: the point is the data flow
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            count += batch.shape[0]
            total += loss.item()
        line = f"rank {rank}/{world} epoch {epoch}: {count} windows, mean loss {total / max(len(loader), 1):.4f}\n"
        sys.stdout.write(line)  # one write: the ranks share the terminal
        sys.stdout.flush()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
