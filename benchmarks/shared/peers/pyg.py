"""PyTorch Geometric's `EquilibriumAggregation`, timed at the sizes of our default model.

Only this module imports torch; `available` says why it cannot when torch_geometric is not
installed (`pip install -e '.[peers]'`).
"""

from collections.abc import Callable
from typing import Any


def available() -> str | None:
    """None when torch and torch_geometric import; otherwise the reason they do not."""
    try:
        import torch  # noqa: F401
        from torch_geometric.nn.aggr import EquilibriumAggregation  # noqa: F401
    except ImportError as error:
        return f"PyG peer skipped: {error} (install the 'peers' extra)"
    return None


def pyg_step(
    batch: int,
    set_size: int,
    in_size: int,
    out_size: int,
    widths: tuple[int, ...],
    readout_widths: tuple[int, ...],
    steps: int,
    dtype: str = "float32",
    seed: int = 0,
) -> tuple[Callable[[], None], dict[str, Any]]:
    """PyG's forward+backward at our sizes, as a callable to time.

    `batch` sets of `set_size` elements of `in_size` features in one `index`-batched call of
    `torch_geometric.nn.aggr.EquilibriumAggregation(in_size, out_size, list(widths),
    grad_iter=steps)` (its potential: the same hidden widths, residual + LayerNorm + tanh,
    scalar output), a tanh MLP readout of `readout_widths` to one number and the squared-error
    loss; a call runs `loss.backward()`.

    **Returns:** `(step, {"torch": version, "torch_geometric": version, "threads": n})`.
    """
    import torch
    import torch_geometric
    from torch_geometric.nn.aggr import EquilibriumAggregation

    torch.manual_seed(seed)
    torch_dtype = getattr(torch, dtype)
    layer = EquilibriumAggregation(in_size, out_size, list(widths), grad_iter=steps)
    layer = layer.to(torch_dtype)
    sizes = [out_size, *readout_widths]
    layers: list[torch.nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [torch.nn.Linear(a, b), torch.nn.Tanh()]
    readout = torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-1], 1)).to(torch_dtype)
    x = torch.rand(batch * set_size, in_size, dtype=torch_dtype)
    index = torch.arange(batch).repeat_interleave(set_size)
    labels = torch.rand(batch, dtype=torch_dtype)

    def step():
        layer.zero_grad()
        readout.zero_grad()
        y = layer(x, index, dim_size=batch)
        loss = ((readout(y)[:, 0] - labels) ** 2).mean()
        loss.backward()

    versions = {
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "threads": torch.get_num_threads(),
    }
    return step, versions
