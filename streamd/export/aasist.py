"""AASIST and AASIST-L (Jung et al., "AASIST: Audio Anti-Spoofing using Integrated
Spectro-Temporal Graph Attention Networks", ICASSP 2022), for loading the published checkpoints
and exporting them to the streamd model contract.

Written from the paper and from the checkpoints' key names and shapes. Output index 0 is spoof,
index 1 bona fide (the original's score is logit 1).

Pipeline: fixed sinc filterbank -> |.| -> 3x3 max-pool -> BN/SELU -> six residual blocks ->
spectral graph (max over time, 23 nodes + positional embedding) and temporal graph (max over
frequency) -> GAT + top-k pooling each -> two parallel branches of two stacked HS-GAL layers with
a stack node -> element-wise max of the branches (max graph operation) -> readout
[max|T|, mean T, max|S|, mean S, stack] -> linear -> 2 logits.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamd.export.aasist_layers import (
    GraphAttentionLayer,
    GraphPool,
    HtrgGraphAttentionLayer,
    ResidualBlock,
    SincFrontEnd,
)

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 64600  # what the original evaluation feeds: about 4.04 s at 16 kHz

#: ``model_config`` of the published .conf files; the ASVspoof 5 baseline uses AASIST's.
KNOWN_CONFIGS: dict[str, dict[str, Any]] = {
    "AASIST": {
        "architecture": "AASIST",
        "nb_samp": 64600,
        "first_conv": 128,
        "filts": [70, [1, 32], [32, 32], [32, 64], [64, 64]],
        "gat_dims": [64, 32],
        "pool_ratios": [0.5, 0.7, 0.5, 0.5],
        "temperatures": [2.0, 2.0, 100.0, 100.0],
    },
    "AASIST-L": {
        "architecture": "AASIST",
        "nb_samp": 64600,
        "first_conv": 128,
        "filts": [70, [1, 32], [32, 32], [32, 24], [24, 24]],
        "gat_dims": [24, 32],
        "pool_ratios": [0.4, 0.5, 0.7, 0.5],
        "temperatures": [2.0, 2.0, 100.0, 100.0],
    },
}


@dataclass(frozen=True)
class AasistConfig:
    """The hyper-parameters of ``model_config``, validated once so a bad .conf fails early."""

    n_filters: int
    first_conv: int
    blocks: tuple[tuple[int, int], ...]  # (in, out) channels of the six residual blocks
    gat_dims: tuple[int, int]
    pool_ratios: tuple[float, ...]
    temperatures: tuple[float, ...]
    nb_samp: int = WINDOW_SAMPLES

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> AasistConfig:
        for key in ("filts", "gat_dims", "pool_ratios", "temperatures"):
            if key not in cfg:
                raise ValueError(f"model_config.{key} is missing")
        filts = cfg["filts"]
        if len(filts) != 5 or any(len(f) != 2 for f in filts[1:]):
            raise ValueError(f"model_config.filts must be [n, [a, b]] x 4, got {filts!r}")
        pairs = [(int(a), int(b)) for a, b in filts[1:]]
        blocks = (pairs[0], pairs[1], pairs[2], pairs[3], pairs[3], pairs[3])
        if len(cfg["gat_dims"]) != 2:
            raise ValueError("model_config.gat_dims must have 2 entries")
        if len(cfg["pool_ratios"]) < 3 or len(cfg["temperatures"]) < 3:
            raise ValueError("model_config.pool_ratios and .temperatures need 3 entries or more")
        return cls(
            n_filters=int(filts[0]),
            first_conv=int(cfg.get("first_conv", 128)),
            blocks=blocks,
            gat_dims=(int(cfg["gat_dims"][0]), int(cfg["gat_dims"][1])),
            pool_ratios=tuple(float(r) for r in cfg["pool_ratios"]),
            temperatures=tuple(float(t) for t in cfg["temperatures"]),
            nb_samp=int(cfg.get("nb_samp", WINDOW_SAMPLES)),
        )


class AASIST(nn.Module):
    """AASIST on a raw 16 kHz waveform ``[B, S]`` -> logits ``[B, 2]`` (0 spoof, 1 bona fide).

    Any ``S`` that leaves the encoder at least one frame works; the published models were trained
    and evaluated at ``S = 64600`` (see :class:`AasistForExport` for the evaluation's tiling).
    """

    def __init__(self, model_config: Mapping[str, Any]) -> None:
        super().__init__()
        cfg = AasistConfig.from_mapping(model_config)
        self.config = cfg
        self.config_source = "given"
        channels = cfg.blocks[-1][1]
        g0, g1 = cfg.gat_dims
        ratios, temps = cfg.pool_ratios, cfg.temperatures

        self.conv_time = SincFrontEnd(cfg.n_filters, cfg.first_conv, SAMPLE_RATE)
        self.first_bn = nn.BatchNorm2d(1)
        self.encoder = nn.Sequential(
            *(
                nn.Sequential(ResidualBlock(a, b, first=i == 0))
                for i, (a, b) in enumerate(cfg.blocks)
            )
        )
        # channels_last convolutions are ~1.5x faster on CPU (oneDNN); loading a state dict copies
        # into these tensors and keeps their layout, and ONNX export ignores it
        self.encoder.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        # one learned position vector per spectral node (the 3x3 pool leaves n_filters // 3 bands)
        self.pos_S = nn.Parameter(torch.randn(1, cfg.n_filters // 3, channels))
        # stack nodes: kept [1, 1, D] and broadcast over the batch, as the original does
        self.master1 = nn.Parameter(torch.randn(1, 1, g0))
        self.master2 = nn.Parameter(torch.randn(1, 1, g0))

        self.GAT_layer_S = GraphAttentionLayer(channels, g0, temperature=temps[0])
        self.GAT_layer_T = GraphAttentionLayer(channels, g0, temperature=temps[1])
        self.HtrgGAT_layer_ST11 = HtrgGraphAttentionLayer(g0, g1, temperature=temps[2])
        self.HtrgGAT_layer_ST12 = HtrgGraphAttentionLayer(g1, g1, temperature=temps[2])
        self.HtrgGAT_layer_ST21 = HtrgGraphAttentionLayer(g0, g1, temperature=temps[2])
        self.HtrgGAT_layer_ST22 = HtrgGraphAttentionLayer(g1, g1, temperature=temps[2])

        self.pool_S = GraphPool(ratios[0], g0)
        self.pool_T = GraphPool(ratios[1], g0)
        # the original uses pool_ratios[2] for all four HS-GAL poolings; pool_ratios[3] is unused
        self.pool_hS1 = GraphPool(ratios[2], g1)
        self.pool_hT1 = GraphPool(ratios[2], g1)
        self.pool_hS2 = GraphPool(ratios[2], g1)
        self.pool_hT2 = GraphPool(ratios[2], g1)

        self.drop_way = nn.Dropout(p=0.2)
        self.drop = nn.Dropout(p=0.5)
        self.out_layer = nn.Linear(5 * g1, 2)

    def encode(self, wave: Tensor) -> Tensor:
        """Waveform ``[B, S]`` -> encoder feature map ``[B, C, bands, frames]``."""
        x = self.conv_time(wave)
        x = F.max_pool2d(x.abs().unsqueeze(1), kernel_size=(3, 3))
        x = F.selu(self.first_bn(x))
        out: Tensor = self.encoder(x.contiguous(memory_format=torch.channels_last))
        return out

    def _hsgal_branch(
        self,
        layers: tuple[HtrgGraphAttentionLayer, HtrgGraphAttentionLayer],
        pools: tuple[GraphPool, GraphPool],
        temporal: Tensor,
        spectral: Tensor,
        master: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One branch: HS-GAL, top-k pooling, then a second HS-GAL added as a residual."""
        t, s, m = layers[0](temporal, spectral, master)
        s = pools[0](s)
        t = pools[1](t)
        t_aug, s_aug, m_aug = layers[1](t, s, m)
        return (
            self.drop_way(t + t_aug),
            self.drop_way(s + s_aug),
            self.drop_way(m + m_aug),
        )

    def embed(self, wave: Tensor) -> Tensor:
        """Waveform ``[B, S]`` -> the ``[B, 5 * gat_dims[1]]`` readout that the classifier sees."""
        return self.graph_embed(*self.graph_nodes(self.encode(wave)))

    @staticmethod
    def graph_nodes(encoded: Tensor) -> tuple[Tensor, Tensor]:
        """Encoder map -> parameter-free node inputs: spectral ``[B, bands, C]``,
        temporal ``[B, frames, C]``.

        Split from :meth:`embed` so that ``streamd train`` can cache these once per window and
        train the graph layers (:meth:`graph_embed`) without re-running the encoder.
        """
        e = encoded.abs()
        return e.amax(dim=3).transpose(1, 2), e.amax(dim=2).transpose(1, 2)

    def graph_embed(self, spectral: Tensor, temporal: Tensor) -> Tensor:
        """Node inputs from :meth:`graph_nodes` -> the readout (graph attention, HS-GAL, max,
        readout)."""
        spectral = spectral + self.pos_S
        spectral = self.pool_S(self.GAT_layer_S(spectral))
        temporal = self.pool_T(self.GAT_layer_T(temporal))

        t1, s1, m1 = self._hsgal_branch(
            (self.HtrgGAT_layer_ST11, self.HtrgGAT_layer_ST12),
            (self.pool_hS1, self.pool_hT1),
            temporal,
            spectral,
            self.master1,
        )
        t2, s2, m2 = self._hsgal_branch(
            (self.HtrgGAT_layer_ST21, self.HtrgGAT_layer_ST22),
            (self.pool_hS2, self.pool_hT2),
            temporal,
            spectral,
            self.master2,
        )
        # max graph operation: the two branches compete element-wise
        t = torch.maximum(t1, t2)
        s = torch.maximum(s1, s2)
        m = torch.maximum(m1, m2)
        return torch.cat(
            [t.abs().amax(dim=1), t.mean(dim=1), s.abs().amax(dim=1), s.mean(dim=1), m.squeeze(1)],
            dim=1,
        )

    def forward(self, wave: Tensor) -> Tensor:
        logits: Tensor = self.out_layer(self.drop(self.embed(wave)))
        return logits


def tile_to_length(wave: Tensor, n_samples: int = WINDOW_SAMPLES) -> Tensor:
    """Tile ``[B, S]`` (repeat whole, then cut) or cut it to ``[B, n_samples]``.

    This is the original evaluation's padding: sample ``i`` of the result is ``wave[:, i % S]``.
    Written as one gather over ``arange % S`` so that ``S`` stays symbolic in the ONNX graph.
    ``S`` must be at least 1.
    """
    idx = torch.remainder(torch.arange(n_samples, device=wave.device), wave.shape[1])
    return wave.index_select(1, idx)


class AasistForExport(nn.Module):
    """Model contract wrapper: any-length 16 kHz waveform ``[B, S]`` -> logits ``[B, 2]``.

    Input is tiled or cut to the training window inside the graph, so ONNX gets a dynamic
    ``samples`` axis while the network itself always sees ``nb_samp`` samples.
    """

    def __init__(self, model: AASIST) -> None:
        super().__init__()
        self.model = model
        self.n_samples = model.config.nb_samp

    def forward(self, wave: Tensor) -> Tensor:
        logits: Tensor = self.model(tile_to_length(wave, self.n_samples))
        return logits


def _shape_signature(state: Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def infer_config(state: Mapping[str, Tensor]) -> tuple[dict[str, Any], str]:
    """Pick the published ``model_config`` whose parameter shapes equal the checkpoint's.

    Shapes fix the channel and graph sizes but not ``pool_ratios`` or ``temperatures``, which
    are taken from the matching published config; returns ``(model_config, name)``.
    """
    wanted = _shape_signature(state)
    for name, cfg in KNOWN_CONFIGS.items():
        if _shape_signature(AASIST(cfg).state_dict()) == wanted:
            return dict(cfg), name
    pos = state.get("pos_S")
    raise ValueError(
        "checkpoint shapes match no published AASIST config "
        f"(pos_S {tuple(pos.shape) if pos is not None else None}); pass its .conf file"
    )


def _read_state_dict(pth_path: str | Path) -> dict[str, Tensor]:
    obj = torch.load(str(pth_path), map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{pth_path}: not a state dict")
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def read_model_config(conf_path: str | Path) -> dict[str, Any]:
    """``model_config`` from an AASIST .conf (JSON), or the file itself if it is that dict."""
    with open(conf_path) as f:
        conf = json.load(f)
    cfg = conf.get("model_config", conf)
    if not isinstance(cfg, dict) or "filts" not in cfg:
        raise ValueError(f"{conf_path}: no model_config with filts")
    return cfg


def load_checkpoint(pth_path: str | Path, conf_path: str | Path | None = None) -> AASIST:
    """Load a published AASIST state dict with ``strict=True`` into an eval-mode model.

    Without ``conf_path`` the config is inferred from the checkpoint's shapes (see
    :func:`infer_config`); ``model.config_source`` and the log say which config was used.
    """
    state = _read_state_dict(pth_path)
    if conf_path is not None:
        cfg = read_model_config(conf_path)
        source = str(conf_path)
    else:
        cfg, name = infer_config(state)
        source = f"inferred from shapes: published {name} config"
    model = AASIST(cfg)
    model.load_state_dict(state, strict=True)
    model.config_source = source
    log.info("loaded %s (%s)", pth_path, source)
    return model.eval()
