"""Feature extraction split over two real gloo processes: each extracts its share, the
processes trade features a round at a time, and each ends with every item's rows in item
order, as one process would have them, without holding its whole share first."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp

from desktop_tl.core.distributed import GATHER_ROUND_BATCHES, Distributed

BATCH_ITEMS = 2
ROUND_ITEMS = BATCH_ITEMS * GATHER_ROUND_BATCHES
# four rounds of a process's share, the last one for rank 0 alone (shares of 97 and 96)
COUNT = 3 * ROUND_ITEMS * 2 + 1


def item_rows(index: int, views: int) -> torch.Tensor:
    """The features an item's views extract to: distinct for every item and view."""
    view = torch.arange(views, dtype=torch.float32)[:, None]
    return torch.sin(index * 0.37 + view * 1.9 + torch.arange(5, dtype=torch.float32))


def _worker(rank: int, port: int, views: int, out: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2
    )
    distributed = Distributed(rank, 2, rank, "gloo", torch.device("cpu"))
    made = []  # share positions extracted so far, at each batch

    def extract(share):
        for start in range(0, len(share), BATCH_ITEMS):
            positions = torch.arange(start, min(start + BATCH_ITEMS, len(share)))
            made.append(int(positions[-1]))
            rows = torch.cat([item_rows(int(share[p]), views) for p in positions])
            yield rows, share[positions].repeat_interleave(views) % 3, positions.repeat_interleave(views)

    seen = []
    for features, labels, indices in distributed.shared_extraction(
        extract, COUNT, batch_items=BATCH_ITEMS, rows_per_item=views
    ):
        # how far into its share this process had extracted when these items arrived
        seen.append((features, labels, indices, max(made)))
    torch.save(seen, f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("views", [1, 2])
def test_two_processes_trade_features_round_by_round_in_item_order(tmp_path, views):
    mp.start_processes(_worker, args=(free_port(), views, str(tmp_path)), nprocs=2, start_method="spawn")

    expected = torch.cat([item_rows(i, views) for i in range(COUNT)])
    for rank in (0, 1):
        seen = torch.load(tmp_path / f"rank{rank}.pt")
        features = torch.cat([s[0] for s in seen])
        labels = torch.cat([s[1] for s in seen])
        indices = torch.cat([s[2] for s in seen])
        # every item once, in item order, its views together and in view order
        assert torch.equal(indices, torch.arange(COUNT).repeat_interleave(views))
        assert torch.equal(labels, indices % 3)
        assert torch.equal(features, expected)
        # batches of whole items, at most BATCH_ITEMS of them
        assert all(len(s[2]) % views == 0 and len(s[2]) <= BATCH_ITEMS * views for s in seen)
        # items arrive a round at a time: when item i is handed on, this process has
        # extracted no further into its share than the end of i's round (plus the one
        # batch it read ahead), never its whole share first
        share_size = len(range(rank, COUNT, 2))
        for _features, _labels, batch_indices, extracted in seen:
            round_end = (int(batch_indices[-1]) // (ROUND_ITEMS * 2) + 1) * ROUND_ITEMS
            assert extracted < min(share_size, round_end + BATCH_ITEMS)
        assert seen[0][3] < share_size // 2
