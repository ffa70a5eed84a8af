"""A tiny, untrained VITS model written like a Hub checkpoint, for install path 2C.

It exercises the real loading path (``config.json`` + ``model.safetensors`` through
``AutoModel.from_pretrained``) with no download. Its weights are random, so it speaks noise:
the audio sanity check must reject it. A model card carries a license for the license gate.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench_py.engines.standin import MODEL_MARKER

MODEL_CARD = """---
license: {license}
library_name: transformers
pipeline_tag: text-to-speech
tags: [voxbench-standin, untrained]
---
# voxbench tiny VITS (untrained)

Random weights from a small configuration. It loads like a real checkpoint and speaks noise.
"""


def build(dest: str | Path, license_id: str = "apache-2.0", seed: int = 0) -> Path:
    import torch
    from transformers import VitsConfig, VitsModel

    torch.manual_seed(seed)
    config = VitsConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        ffn_dim=32,
        flow_size=16,
        spectrogram_bins=17,
        upsample_initial_channel=16,
        upsample_rates=[8, 8, 4],
        upsample_kernel_sizes=[16, 16, 8],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
        posterior_encoder_num_wavenet_layers=1,
        prior_encoder_num_flows=1,
        prior_encoder_num_wavenet_layers=1,
        duration_predictor_num_flows=1,
        duration_predictor_filter_channels=16,
        depth_separable_num_layers=1,
        sampling_rate=16000,
    )
    path = Path(dest)
    path.mkdir(parents=True, exist_ok=True)
    VitsModel(config).save_pretrained(str(path))
    # Says what it is, so that a production run never loads it as the candidate (engines.standin).
    saved = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**saved, MODEL_MARKER: True}, indent=2) + "\n")
    (path / "README.md").write_text(MODEL_CARD.format(license=license_id))
    return path
