"""Configuration: defaults + overrides → one typed model; errors name the key."""

import pytest

from bench_py.config import default_utterances
from bench_py.config.model import ConfigError, load


def test_ten_default_utterances_of_varied_length():
    utterances = default_utterances()
    assert len(utterances) == 10
    words = sorted(len(u.split()) for u in utterances)
    assert words[0] <= 4 and words[-1] >= 40  # short replies and a long paragraph
    assert len(set(utterances)) == 10


def test_defaults_validate_and_use_the_default_utterances():
    config = load({"gemma_mode": "parallel"})
    assert config.bench.utterances == default_utterances()
    assert config.bench.repetitions == 5 and config.bench.warmup == 1
    assert config.bench.max_timeout_fraction == 0.15
    assert config.bench.timeouts.read == 30


def test_fast_profile_shrinks_sizes_but_explicit_overrides_win():
    fast = load({"gemma_mode": "parallel", "profile": "fast"})
    assert fast.bench.repetitions == 1 and len(fast.bench.utterances) == 2
    assert fast.cotenant.probes == 3
    mixed = load({"gemma_mode": "parallel", "profile": "fast", "bench": {"repetitions": 3}})
    assert mixed.bench.repetitions == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({}, "gemma_mode: required; choose one of parallel, pause-gemma"),
        ({"gemma_mode": "sometimes"}, "gemma_mode"),
        ({"gemma_mode": "parallel", "bench": {"repetitions": 0}}, "bench.repetitions"),
        ({"gemma_mode": "parallel", "bench": {"repetitons": 3}}, "bench.repetitons: unknown key"),
        ({"gemma_mode": "parallel", "candidate": {"port": "eighty"}}, "candidate.port"),
        ({"gemma_mode": "parallel", "profile": "turbo"}, "profile: unknown profile 'turbo'"),
        ({"gemma_mode": "parallel", "bench": {"utterances": []}}, "bench.utterances"),
    ],
)
def test_errors_name_the_bad_key(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(overrides)


def test_the_rule_seal_changes_with_any_threshold_or_word():
    config = load({"gemma_mode": "parallel"})
    seal = config.rule.seal("voxtral", "chatterbox")
    assert len(seal["sha256"]) == 64
    assert "+ 0.5" in seal["text"] and "<= 500 ms" in seal["text"]
    assert seal == config.rule.seal("voxtral", "chatterbox")  # deterministic
    stricter = load({"gemma_mode": "parallel", "rule": {"ttfa_p50_max_ms": 400}})
    assert stricter.rule.seal("voxtral", "chatterbox")["sha256"] != seal["sha256"]
    assert config.rule.seal("voxtral", "kokoro")["sha256"] != seal["sha256"]
