"""RawGAT-ST (Tak et al., "End-to-end spectro-temporal graph attention networks for speaker
verification anti-spoofing and speech deepfake detection", ASVspoof 2021 workshop), the
element-wise multiplication ("mul") fusion variant whose checkpoint EURECOM publishes.

Written from the paper and from the checkpoint's key names and shapes, following the behaviour
of the authors' code where the published weights depend on it. Output index 0 is spoof, index 1
bona fide: the authors' protocol parser labels ``bonafide`` 1 and their score is logit 1.

Pipeline: fixed mel-spaced sinc filterbank (the same computation as AASIST's) -> |.| -> 3x3
max-pool -> BN/SELU -> two separate six-block residual encoders on the same map ->
spectral graph (encoder 1, max over time) and temporal graph (encoder 2, max over frequency) ->
GAT + top-k pooling each -> a linear map from each graph's nodes to a common number of nodes ->
element-wise product (the "mul" fusion) -> spectro-temporal GAT + top-k pooling -> one linear
score per node -> linear over the nodes -> 2 logits.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamd.export.aasist import WINDOW_SAMPLES, _read_state_dict, tile_to_length
from streamd.export.aasist_layers import (
    GraphAttentionLayer,
    GraphPool,
    SincFrontEnd,
    _fold_batchnorm,
)

__all__ = [
    "PUBLISHED_CONFIG",
    "RawGatConfig",
    "RawGatForExport",
    "RawGatST",
    "infer_config",
    "load_checkpoint",
    "read_model_config",
    "tile_to_length",
]

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000

#: ``model:`` of the published model_config_RawGAT_ST.yaml, plus the graph sizes that the
#: authors' code fixes in the model itself (not in the yaml): GAT widths 32 and 16, pooling
#: ratios 0.64 / 0.81 / 0.64, and 12 nodes after the projections that precede the fusion.
PUBLISHED_CONFIG: dict[str, Any] = {
    "nb_samp": 64600,
    "out_channels": 70,
    "first_conv": 128,
    "in_channels": 1,
    "filts": [32, [32, 32], [32, 64], [64, 64]],
    "blocks": [2, 4],
    "nb_classes": 2,
    "gat_dims": [32, 16],
    "pool_ratios": [0.64, 0.81, 0.64],
    "fused_nodes": 12,
}

#: keys every RawGAT-ST state dict has; an AASIST or wav2vec2 checkpoint has none of them
_SIGNATURE_KEYS = (
    "encoder1.0.0.conv_1.weight",
    "encoder2.0.0.conv_1.weight",
    "GAT_layer1.att_weight",
    "GAT_layer3.att_weight",
    "proj1.weight",
    "proj2.weight",
    "proj.weight",
    "proj_node.weight",
)


def _kept(n: int, ratio: float) -> int:
    """Nodes the original's top-k pooling keeps: ``max(2, int(ratio * n))``."""
    return max(2, int(n * ratio))


@dataclass(frozen=True)
class RawGatConfig:
    """The yaml's ``model`` section plus the graph sizes, validated once so a bad file fails
    early."""

    n_filters: int
    first_conv: int
    blocks: tuple[tuple[int, int], ...]  # (in, out) channels of the six residual blocks
    gat_dims: tuple[int, int]
    pool_ratios: tuple[float, float, float]
    fused_nodes: int
    nb_samp: int = WINDOW_SAMPLES

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> RawGatConfig:
        full = {**PUBLISHED_CONFIG, **cfg}
        filts = full["filts"]
        if len(filts) != 4 or any(len(f) != 2 for f in filts[1:]):
            raise ValueError(f"model.filts must be [n, [a, b]] x 3, got {filts!r}")
        if int(full["in_channels"]) != 1 or int(full["nb_classes"]) != 2:
            raise ValueError("RawGAT-ST takes 1 input channel and has 2 classes")
        if len(full["gat_dims"]) != 2 or len(full["pool_ratios"]) != 3:
            raise ValueError("model.gat_dims needs 2 entries and model.pool_ratios 3")
        a, b, c = ((int(x), int(y)) for x, y in filts[1:])
        ratios = tuple(float(r) for r in full["pool_ratios"])
        out = cls(
            n_filters=int(full["out_channels"]),
            first_conv=int(full["first_conv"]),
            # the original builds blocks from filts[1], filts[1], filts[2], filts[3] x 3
            blocks=(a, a, b, c, c, c),
            gat_dims=(int(full["gat_dims"][0]), int(full["gat_dims"][1])),
            pool_ratios=(ratios[0], ratios[1], ratios[2]),
            fused_nodes=int(full["fused_nodes"]),
            nb_samp=int(full["nb_samp"]),
        )
        if out.spectral_nodes < 2 or out.temporal_nodes < 2:
            raise ValueError(
                f"nb_samp {out.nb_samp} and out_channels {out.n_filters} leave "
                f"{out.spectral_nodes} spectral and {out.temporal_nodes} temporal nodes; need 2+"
            )
        return out

    @property
    def spectral_nodes(self) -> int:
        """Frequency bands after the 3x3 pool (70 filters -> 23)."""
        return self.n_filters // 3

    @property
    def temporal_nodes(self) -> int:
        """Frames after the 3x3 pool and the six blocks' pooling by 3 (64,600 samples -> 29)."""
        taps = self.first_conv + 1 if self.first_conv % 2 == 0 else self.first_conv
        frames = (self.nb_samp - taps + 1) // 3
        for _ in self.blocks:
            frames //= 3
        return frames


class RawGatBlock(nn.Module):
    """RawNet2-style 2-D residual block of the original, then max-pooling by 3 along time.

    Reproduces the authors' code, on which the published weights depend:
    - the first block convolves its 1-channel input with ``conv_1`` and, having equal nominal
      in/out widths, adds that 1-channel input to every output channel (broadcast) as its
      residual;
    - the other blocks compute ``bn1`` + SELU, then overwrite the result with ``conv1`` applied
      to the block's input, so ``bn1`` is loaded but never applied;
    - every block carries a 1-channel ``conv_1`` in the checkpoint; only the first one uses it.
    """

    def __init__(self, c_in: int, c_out: int, first: bool = False) -> None:
        super().__init__()
        self.first = first
        if not first:
            self.bn1 = nn.BatchNorm2d(c_in)  # loaded, unused: see the class docstring
            self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=(2, 3), padding=(1, 1))
        self.conv_1 = nn.Conv2d(1, c_out, kernel_size=(2, 3), padding=(1, 1))
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=(2, 3), padding=(0, 1))
        self.conv_downsample: nn.Conv2d | None = (
            nn.Conv2d(c_in, c_out, kernel_size=(1, 3), padding=(0, 1)) if c_in != c_out else None
        )

    def forward(self, x: Tensor) -> Tensor:
        conv = self.conv_1 if self.first else self.conv1
        if self.training:
            out = self.bn2(conv(x))
        else:  # the same affine map, folded into the convolution
            w, b = _fold_batchnorm(conv, self.bn2)
            out = F.conv2d(x, w, b, padding=(1, 1))
        out = self.conv2(F.selu(out, inplace=True))
        out = out + (x if self.conv_downsample is None else self.conv_downsample(x))
        return F.max_pool2d(out, kernel_size=(1, 3))


def _encoder(cfg: RawGatConfig) -> nn.Sequential:
    blocks = (RawGatBlock(a, b, first=i == 0) for i, (a, b) in enumerate(cfg.blocks))
    encoder = nn.Sequential(*(nn.Sequential(block) for block in blocks))
    # channels_last convolutions are ~1.5x faster on CPU (oneDNN); see AASIST
    encoder.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return encoder


class RawGatST(nn.Module):
    """RawGAT-ST on a raw 16 kHz waveform ``[B, nb_samp]`` -> logits ``[B, 2]`` (0 spoof,
    1 bona fide).

    The input length is fixed by the node-wise projections (``proj1``, ``proj2``): the published
    model takes exactly 64,600 samples; :class:`RawGatForExport` tiles any length to that.
    """

    def __init__(self, model_config: Mapping[str, Any]) -> None:
        super().__init__()
        cfg = RawGatConfig.from_mapping(model_config)
        self.config = cfg
        self.config_source = "given"
        channels = cfg.blocks[-1][1]
        g0, g1 = cfg.gat_dims
        r_s, r_t, r_st = cfg.pool_ratios
        kept_s = _kept(cfg.spectral_nodes, r_s)
        kept_t = _kept(cfg.temporal_nodes, r_t)
        kept_st = _kept(cfg.fused_nodes, r_st)

        self.conv_time = SincFrontEnd(cfg.n_filters, cfg.first_conv, SAMPLE_RATE)
        self.first_bn = nn.BatchNorm2d(1)
        # two encoders of the same shape, one per graph; the authors note one would do as well,
        # but the published weights have two
        self.encoder1 = _encoder(cfg)
        self.encoder2 = _encoder(cfg)
        self.GAT_layer1 = GraphAttentionLayer(channels, g0)  # spectral
        self.GAT_layer2 = GraphAttentionLayer(channels, g0)  # temporal
        self.GAT_layer3 = GraphAttentionLayer(g0, g1)  # spectro-temporal, after the fusion
        self.pool1 = GraphPool(r_s, g0, min_keep=2)
        self.pool2 = GraphPool(r_t, g0, min_keep=2)
        self.pool3 = GraphPool(r_st, g1, min_keep=2)
        self.proj1 = nn.Linear(kept_s, cfg.fused_nodes)
        self.proj2 = nn.Linear(kept_t, cfg.fused_nodes)
        self.proj = nn.Linear(g1, 1)
        self.proj_node = nn.Linear(kept_st, 2)

    def front(self, wave: Tensor) -> Tensor:
        """Waveform ``[B, S]`` -> the 1-channel map both encoders read, ``[B, 1, bands, T]``."""
        x = self.conv_time(wave)
        x = F.max_pool2d(x.abs().unsqueeze(1), kernel_size=(3, 3))
        return F.selu(self.first_bn(x)).contiguous(memory_format=torch.channels_last)

    def embed(self, wave: Tensor) -> Tensor:
        """Waveform ``[B, nb_samp]`` -> the ``[B, k]`` node scores that the classifier sees
        (``k`` = 7 for the published model)."""
        x = self.front(wave)
        spectral = self.encoder1(x).abs().amax(dim=3).transpose(1, 2)  # [B, bands, C]
        temporal = self.encoder2(x).abs().amax(dim=2).transpose(1, 2)  # [B, frames, C]
        s = self.pool1(self.GAT_layer1(spectral))  # [B, kept_s, g0], best-scored node first
        t = self.pool2(self.GAT_layer2(temporal))
        # each graph's nodes are mapped to fused_nodes nodes, then multiplied element-wise
        fused = self.proj1(s.transpose(1, 2)) * self.proj2(t.transpose(1, 2))  # [B, g0, nodes]
        st = self.pool3(self.GAT_layer3(fused.transpose(1, 2)))  # [B, kept_st, g1]
        readout: Tensor = self.proj(st).flatten(1)
        return readout

    def classify(self, readout: Tensor) -> Tensor:
        """The output layer alone: :meth:`embed`'s readout -> logits."""
        logits: Tensor = self.proj_node(readout)
        return logits

    def forward(self, wave: Tensor) -> Tensor:
        return self.classify(self.embed(wave))


class RawGatForExport(nn.Module):
    """Model contract wrapper: any-length 16 kHz waveform ``[B, S]`` -> logits ``[B, 2]``, tiled
    or cut inside the graph to the ``nb_samp`` samples the network takes, as the authors'
    evaluation does."""

    def __init__(self, model: RawGatST) -> None:
        super().__init__()
        self.model = model
        self.n_samples = model.config.nb_samp

    def forward(self, wave: Tensor) -> Tensor:
        logits: Tensor = self.model(tile_to_length(wave, self.n_samples))
        return logits


def _check_is_rawgat(state: Mapping[str, Tensor]) -> None:
    missing = [k for k in _SIGNATURE_KEYS if k not in state]
    if missing:
        hint = " (an AASIST checkpoint: use family aasist)" if "pos_S" in state else ""
        raise ValueError(
            f"not a RawGAT-ST state dict{hint}: it lacks {', '.join(missing[:3])}"
            + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        )


def infer_config(state: Mapping[str, Tensor]) -> dict[str, Any]:
    """A ``model`` config for a RawGAT-ST state dict, from its parameter shapes.

    Shapes give the channel widths, GAT widths and node counts; the sinc filterbank, window and
    pooling ratios, which no shape records, are the published ones, and the result must rebuild
    every shape exactly, or this raises and asks for the yaml.
    """
    _check_is_rawgat(state)

    def widths(block: int) -> list[int]:
        w = state[f"encoder1.{block}.0.conv1.weight"]
        return [int(w.shape[1]), int(w.shape[0])]

    cfg = dict(PUBLISHED_CONFIG)
    cfg["filts"] = [PUBLISHED_CONFIG["filts"][0], widths(1), widths(2), widths(3)]
    cfg["gat_dims"] = [
        int(state["GAT_layer1.att_proj.weight"].shape[0]),
        int(state["GAT_layer3.att_proj.weight"].shape[0]),
    ]
    cfg["fused_nodes"] = int(state["proj1.weight"].shape[0])
    wanted = {k: tuple(v.shape) for k, v in state.items()}
    got = {k: tuple(v.shape) for k, v in RawGatST(cfg).state_dict().items()}
    if got != wanted:
        diff = sorted(k for k in wanted.keys() | got.keys() if wanted.get(k) != got.get(k))
        raise ValueError(
            "checkpoint shapes match no RawGAT-ST config with the published sinc layer and "
            f"window (differ at {', '.join(diff[:3])}); pass its model_config yaml"
        )
    return cfg


def read_model_config(yaml_path: str | Path) -> dict[str, Any]:
    """The ``model`` section of a RawGAT-ST yaml (model_config_RawGAT_ST.yaml), or the file
    itself when it is that section."""
    import yaml

    with open(yaml_path) as f:
        conf = yaml.safe_load(f)
    cfg = conf.get("model", conf) if isinstance(conf, dict) else None
    if not isinstance(cfg, dict) or "filts" not in cfg:
        raise ValueError(f"{yaml_path}: no model section with filts")
    return cfg


def load_checkpoint(pth_path: str | Path, yaml_path: str | Path | None = None) -> RawGatST:
    """Load a RawGAT-ST state dict with ``strict=True`` into an eval-mode model.

    Without ``yaml_path`` the config is inferred from the checkpoint's shapes (see
    :func:`infer_config`); ``model.config_source`` and the log say which config was used.
    """
    state = _read_state_dict(pth_path)
    _check_is_rawgat(state)
    if yaml_path is not None:
        cfg = read_model_config(yaml_path)
        source = str(yaml_path)
    else:
        cfg = infer_config(state)
        source = "inferred from shapes: published RawGAT-ST config"
    model = RawGatST(cfg)
    model.load_state_dict(state, strict=True)
    model.config_source = source
    log.info("loaded %s (%s)", pth_path, source)
    return model.eval()
