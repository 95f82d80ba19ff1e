"""Models and datasets for the dataset-job tests, importable as ``_dataset_jobs:NAME`` by the
``torchrun`` subprocesses of ``tests/test_dataset_distributed.py`` (``tests/`` on ``PYTHONPATH``).

Everything is built from fixed seeds in float64, so every process builds the same model and data.
``Images`` can log the indices it serves (``FATTR_TEST_LOG``: a folder, one file per process) and
fail on one index (``FATTR_TEST_FAIL_AT``), to check sharding and resumption from outside.
"""
from __future__ import annotations

import os

import torch
from torch import nn
from torch.utils.data import Dataset

N = 44  # with batch_size 8: 6 chunks, the last one of 4 examples


class Net(nn.Module):
    """``(B, 2, 6, 6) -> (B, 4)``: conv, tanh, conv, softplus, mean pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3)
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv1(x))
        h = nn.functional.softplus(self.conv2(h))
        return self.fc(h.mean(dim=(2, 3)))


def model() -> nn.Module:
    g = torch.Generator().manual_seed(0)
    net = Net().double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return net.eval()


class Images(Dataset):
    """``N`` items ``(image (2, 6, 6) float64, label int)``."""

    def __init__(self, n: int = N) -> None:
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 2, 6, 6, generator=g, dtype=torch.float64)
        self.y = torch.randint(0, 4, (n,), generator=g)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int):
        log = os.environ.get("FATTR_TEST_LOG")
        if log:
            with open(os.path.join(log, str(os.getpid())), "a") as f:
                f.write(f"{i}\n")
        if os.environ.get("FATTR_TEST_FAIL_AT") == str(i):
            raise RuntimeError(f"injected failure at index {i}")
        return self.x[i], int(self.y[i])


def main(out: str) -> None:
    """The job of ``tests/test_dataset_distributed.py`` from a script that initialises the process group
    itself (``torchrun -m _dataset_jobs OUT``): attribute_dataset must use that group and leave it."""
    import torch.distributed as dist

    import _dataset_jobs as jobs  # not __main__'s classes: the store records the model's and dataset's class
    import fattr
    dist.init_process_group("gloo")
    fattr.attribute_dataset(fattr.integrated_gradients, jobs.model(), jobs.Images(), out, batch_size=8,
                            target="label", n_steps=8, return_delta=True, progress=True)
    if not dist.is_initialized():
        raise RuntimeError("attribute_dataset destroyed the caller's process group")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    import sys
    main(sys.argv[1])
