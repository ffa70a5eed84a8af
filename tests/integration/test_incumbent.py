"""The incumbent adapter against panda's API as published: exactly the documented fields, the
reference as the server expects it, and the audio's shape read from the response's headers —
at a rate other than 24 kHz, streamed or whole, and said which."""

from __future__ import annotations

import asyncio
import shutil
import sys

import httpx
import numpy as np
import pytest

from bench_py.audio import Pcm, median_f0
from bench_py.config import embedded_overrides
from bench_py.config.model import deep_merge, load
from bench_py.engines.http import incumbent_target
from bench_py.measure.client import stream_request
from bench_py.measure.decode import StreamDecodeError, shape_from_headers
from tests.helpers import free_port, running_command

PUBLISHED = {"text", "reference_audio", "exaggeration", "cfg_weight", "temperature"}


@pytest.fixture(scope="module")
def panda(tmp_path_factory, reference_path, incumbent_token, session_dir):
    """Two incumbent stand-ins at 22.05 kHz: one sends its body whole, one streams it; both resolve
    reference_audio paths under a references directory holding the confirmed clip."""
    root = tmp_path_factory.mktemp("panda")
    (root / "voice-references").mkdir()
    shutil.copyfile(reference_path, root / "voice-references" / "samantha.wav")
    with (
        running_command(*_server("whole", root, session_dir), root) as (whole, _),
        running_command(*_server("streamed", root, session_dir), root) as (streamed, _),
    ):
        yield {"whole": whole, "streamed": streamed}


def _server(delivery: str, root, session_dir) -> tuple[list[str], int]:
    port = free_port()
    argv = [sys.executable, "-m", "bench_py.standins.tts_server", "--api", "chatterbox", "--engine", "flite"]
    argv += ["--port", str(port), "--sample-rate", "22050", "--delivery", delivery, "--references-dir", str(root)]
    argv += ["--token-file", str(session_dir / "incumbent.token")]
    return argv, port


def _incumbent(url: str, send_as: str, token_file) -> object:
    overrides = deep_merge(
        embedded_overrides(),
        {"incumbent": {"url": f"{url}/tts", "token_file": str(token_file), "reference_audio": {"send_as": send_as}}},
    )
    return load({"gemma_mode": "parallel", "reference": {"name": "samantha"}, **overrides}).incumbent


@pytest.mark.parametrize("delivery", ["whole", "streamed"])
@pytest.mark.parametrize("send_as", ["path", "base64"])
def test_the_adapter_sends_the_published_fields_and_reads_the_shape_from_headers(
    panda, delivery, send_as, reference_path, session_dir, incumbent_token
):
    incumbent = _incumbent(panda[delivery], send_as, session_dir / "incumbent.token")
    target = incumbent_target(incumbent, str(reference_path), "samantha")
    cloned, preset = (
        target.request("Good morning, how did you sleep?", "cloned"),
        target.request("Good morning.", "preset"),
    )
    assert set(cloned.body) == PUBLISHED and set(preset.body) == PUBLISHED - {"reference_audio"}
    assert (cloned.body["exaggeration"], cloned.body["cfg_weight"], cloned.body["temperature"]) == (0.3, 0.3, 0.6)
    if send_as == "path":
        assert cloned.body["reference_audio"] == "voice-references/samantha.wav"
    assert incumbent_token not in str(cloned.body) and cloned.headers == {"X-Internal-Token": incumbent_token}

    async def both():
        async with httpx.AsyncClient(timeout=30) as client:
            return await stream_request(client, cloned), await stream_request(client, preset)

    for result in asyncio.run(both()):
        assert result.ok, result.error
        assert result.rate == 22050 and result.rate_source == "headers"  # not the 24 kHz fallback
        assert result.delivery == delivery
        assert median_f0(Pcm(result.samples, result.rate)) is not None  # read at the right rate, it is speech
    assert "cloned" in asyncio.run(both())[0].headers["x-voxbench-voice"]


def test_a_response_without_its_shape_is_an_error_not_a_guess():
    with pytest.raises(StreamDecodeError, match="X-Sample-Rate"):
        shape_from_headers(httpx.Headers({"x-format": "pcm_s16le"}))
    with pytest.raises(StreamDecodeError, match="X-Format 'mulaw'"):
        shape_from_headers(httpx.Headers({"x-sample-rate": "8000", "x-format": "mulaw"}))
    stereo = shape_from_headers(httpx.Headers({"x-sample-rate": "24000", "x-channels": "2", "x-format": "int16"}))
    assert (stereo.rate, stereo.channels, stereo.sample_format) == (24000, 2, "s16le")
    from bench_py.measure.decode import shaped_decoder

    frames = np.array([[100, 300], [-200, -400]], "<i2").tobytes()  # two stereo frames
    np.testing.assert_array_equal(shaped_decoder(stereo).feed(frames), [200, -300])
