"""Building blocks of AASIST (Jung et al., ICASSP 2022), written from the paper and the checkpoints.

Attribute names follow the published state dicts so that they load with ``strict=True``. Where the
original implementation deviates from the paper in a way the published weights depend on, these
blocks reproduce the implementation, and the docstring says so.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sinc_bandpass_filters(
    n_filters: int = 70, kernel_size: int = 128, sample_rate: int = 16000
) -> np.ndarray:
    """Fixed mel-spaced sinc band-pass filterbank of the first layer, ``[n_filters, taps]`` float32.

    The published weights were trained on top of this exact filterbank, so it is rebuilt with the
    original's precision: band edges in float64, sinc arguments and the sinc itself in float32,
    the ``2 f / sr`` gains in float64, and the Hamming window product in float32. Every dtype is
    spelled out so that numpy's promotion rules (which changed in numpy 2) cannot move a bit.
    An even ``kernel_size`` becomes the next odd one, as in the original (128 -> 129 taps).
    """
    taps = kernel_size + 1 if kernel_size % 2 == 0 else kernel_size
    nfft = 512
    freqs = (sample_rate // 2) * np.linspace(0.0, 1.0, nfft // 2 + 1)
    mels = 2595.0 * np.log10(1.0 + freqs / 700.0)
    edges_mel = np.linspace(mels.min(), mels.max(), n_filters + 1)
    edges_hz = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)

    support = np.arange(-(taps - 1) / 2, (taps - 1) / 2 + 1, dtype=np.float32)
    pi32 = np.float32(np.pi)

    def lowpass(cutoff: np.ndarray) -> np.ndarray:
        # cutoff: float64 [n, 1]; returns float64 [n, taps] from a float32 sinc
        arg = (support[None, :] * (2.0 * cutoff).astype(np.float32)) / np.float32(sample_rate)
        y = pi32 * np.where(arg == 0, np.float32(1e-20), arg)
        sinc = (np.sin(y) / y).astype(np.float32)
        return (2.0 * cutoff / sample_rate) * sinc.astype(np.float64)

    low = edges_hz[:-1, None]
    high = edges_hz[1:, None]
    ideal = (lowpass(high) - lowpass(low)).astype(np.float32)
    window = np.hamming(taps).astype(np.float32)
    return np.asarray(window[None, :] * ideal, dtype=np.float32)


class SincFrontEnd(nn.Module):
    """The fixed sinc filterbank as a 1-D convolution over the raw waveform.

    The filters are a non-persistent buffer: they are not in the published state dicts, and being
    a buffer they follow ``.to(device)`` and become ONNX initializers.
    """

    filters: Tensor

    def __init__(self, n_filters: int, kernel_size: int, sample_rate: int = 16000) -> None:
        super().__init__()
        bank = torch.from_numpy(sinc_bandpass_filters(n_filters, kernel_size, sample_rate))
        self.register_buffer("filters", bank.unsqueeze(1), persistent=False)

    def forward(self, wave: Tensor) -> Tensor:
        """``[B, S]`` waveform -> ``[B, n_filters, S - taps + 1]``."""
        return F.conv1d(wave.unsqueeze(1), self.filters)


def _fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    assert bn.running_mean is not None and bn.running_var is not None and conv.bias is not None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w = conv.weight * scale[:, None, None, None]
    return w, (conv.bias - bn.running_mean) * scale + bn.bias


class ResidualBlock(nn.Module):
    """RawNet2-style 2-D residual block, then max-pooling by 3 along time.

    The original computes a pre-activation ``bn1`` + SELU and then overwrites the result with
    ``conv1`` applied to the block's *input*. The published weights were trained that way, so
    ``bn1`` exists (to load) but is never applied.
    """

    def __init__(self, c_in: int, c_out: int, first: bool = False) -> None:
        super().__init__()
        if not first:
            self.bn1 = nn.BatchNorm2d(c_in)  # loaded, unused: see the class docstring
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=(2, 3), padding=(1, 1))
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=(2, 3), padding=(0, 1))
        self.conv_downsample: nn.Conv2d | None = (
            nn.Conv2d(c_in, c_out, kernel_size=(1, 3), padding=(0, 1)) if c_in != c_out else None
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            out = self.bn2(self.conv1(x))
        else:
            w, b = _fold_batchnorm(self.conv1, self.bn2)
            out = F.conv2d(x, w, b, padding=(1, 1))
        out = self.conv2(F.selu(out, inplace=True))
        out += x if self.conv_downsample is None else self.conv_downsample(x)
        return F.max_pool2d(out, kernel_size=(1, 3))


def _pairwise_products(x: Tensor) -> Tensor:
    """``[B, N, D]`` -> ``[B, N, N, D]`` with ``x_i * x_j``: the edge features of a full graph."""
    return x.unsqueeze(2) * x.unsqueeze(1)


def _node_batchnorm(bn: nn.BatchNorm1d, x: Tensor) -> Tensor:
    """Batch norm over the feature axis of ``[B, N, D]`` node features (nodes act as batch)."""
    b, n, d = x.shape
    flat: Tensor = bn(x.reshape(-1, d))
    return flat.reshape(b, n, d)


def _xavier(rows: int, cols: int) -> nn.Parameter:
    param = nn.Parameter(torch.empty(rows, cols))
    nn.init.xavier_normal_(param)
    return param


class GraphAttentionLayer(nn.Module):
    """Graph attention over a fully connected graph of one node type (spectral or temporal).

    Edge score ``w . tanh(W_a (x_i * x_j))``, divided by a temperature, softmax over neighbours;
    the output adds an attention-weighted projection to a plain projection of each node.
    """

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0) -> None:
        super().__init__()
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_weight = _xavier(out_dim, 1)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(p=0.2)
        self.temperature = float(temperature)

    def forward(self, x: Tensor) -> Tensor:
        x = self.input_drop(x)
        scores = (torch.tanh(self.att_proj(_pairwise_products(x))) @ self.att_weight).squeeze(-1)
        att = torch.softmax(scores / self.temperature, dim=-1)
        out = self.proj_with_att(att @ x) + self.proj_without_att(x)
        return F.selu(_node_batchnorm(self.bn, out))


class HtrgGraphAttentionLayer(nn.Module):
    """Heterogeneous stacking graph attention (HS-GAL): two node types plus a stack (master) node.

    Edges within type 1, within type 2 and across types each get their own score vector
    (``att_weight11``, ``att_weight22``, ``att_weight12`` for both directions). The stack node
    attends over all nodes and is updated, but is not a neighbour of the others.
    """

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0) -> None:
        super().__init__()
        self.proj_type1 = nn.Linear(in_dim, in_dim)
        self.proj_type2 = nn.Linear(in_dim, in_dim)
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_projM = nn.Linear(in_dim, out_dim)
        self.att_weight11 = _xavier(out_dim, 1)
        self.att_weight22 = _xavier(out_dim, 1)
        self.att_weight12 = _xavier(out_dim, 1)
        self.att_weightM = _xavier(out_dim, 1)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.proj_with_attM = nn.Linear(in_dim, out_dim)
        self.proj_without_attM = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(p=0.2)
        self.temperature = float(temperature)

    @staticmethod
    def _edge_type_onehot(n1: int, n2: int, like: Tensor) -> Tensor:
        """``[N, N, 3]`` one-hot of the edge type: 0 within type 1, 1 across, 2 within type 2.

        Selecting with a one-hot product keeps the graph free of in-place slice writes (which
        export as ScatterND) and is exact: the unselected terms are multiplied by zero.
        """
        node_type = torch.cat(
            [torch.zeros(n1, dtype=torch.long), torch.ones(n2, dtype=torch.long)]
        ).to(like.device)
        edge_type = node_type.unsqueeze(1) + node_type.unsqueeze(0)
        return F.one_hot(edge_type, num_classes=3).to(like.dtype)

    def forward(self, x1: Tensor, x2: Tensor, master: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Nodes ``[B, N1, D]``, ``[B, N2, D]`` and stack node ``[B or 1, 1, D]`` -> updated
        three."""
        n1, n2 = x1.shape[1], x2.shape[1]
        x = torch.cat([self.proj_type1(x1), self.proj_type2(x2)], dim=1)
        x = self.input_drop(x)

        edge = torch.tanh(self.att_proj(_pairwise_products(x)))
        weights = torch.cat([self.att_weight11, self.att_weight12, self.att_weight22], dim=1)
        scores = ((edge @ weights) * self._edge_type_onehot(n1, n2, x)).sum(dim=-1)
        att = torch.softmax(scores / self.temperature, dim=-1)

        master_scores = torch.tanh(self.att_projM(x * master)) @ self.att_weightM
        master_att = torch.softmax(master_scores / self.temperature, dim=1)
        new_master = self.proj_with_attM(master_att.transpose(1, 2) @ x) + self.proj_without_attM(
            master
        )

        out = self.proj_with_att(att @ x) + self.proj_without_att(x)
        out = F.selu(_node_batchnorm(self.bn, out))
        return out[:, :n1], out[:, n1:], new_master


class GraphPool(nn.Module):
    """Top-k graph pooling: gate each node by a sigmoid score and keep the ``int(N * ratio)`` best.

    ``int(N * ratio)`` truncates as the original does (29 * 0.7 = 20.299... -> 20 nodes); ``N``
    is a static shape, so the exported graph has a constant ``k``. Top-k runs per item. At least
    ``min_keep`` nodes stay: AASIST keeps 1, RawGAT-ST 2.
    """

    def __init__(self, ratio: float, in_dim: int, p: float = 0.3, min_keep: int = 1) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, 1)
        self.drop = nn.Dropout(p=p)
        self.ratio = float(ratio)
        self.min_keep = int(min_keep)

    def forward(self, h: Tensor) -> Tensor:
        scores = torch.sigmoid(self.proj(self.drop(h)))
        keep = max(int(int(h.shape[1]) * self.ratio), self.min_keep)
        _, idx = torch.topk(scores, keep, dim=1)
        return torch.gather(h * scores, 1, idx.expand(-1, -1, h.shape[2]))
