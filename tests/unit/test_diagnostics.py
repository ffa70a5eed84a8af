"""Kernel-error diagnostics on engine logs."""

from bench_py.engines import diagnostics
from bench_py.standins.tts_server import NVRTC_TRACEBACK


def test_an_nvrtc_traceback_is_found_with_its_operation_and_versions(tmp_path):
    log = "INFO starting\nINFO ready\n" + NVRTC_TRACEBACK + "\nINFO still serving\n"
    (found,) = diagnostics.scan(log)
    assert found["error"].startswith("RuntimeError: nvrtc: error")
    assert found["operation"].startswith("istft (")
    assert found["stack"][0].startswith("Traceback")
    assert diagnostics.versions(log) == {"torch": "2.9.0+cu130", "cuda": "13.0", "vllm": "0.18.0"}
    summary = diagnostics.write_report(tmp_path, {"engine": log, "quiet": "all good\n"}, {"image": "x"})
    assert summary == {"file": diagnostics.DIAGNOSTIC_FILE, "engines": ["engine"], "errors": 1, "first": found["error"]}
    text = (tmp_path / diagnostics.DIAGNOSTIC_FILE).read_text()
    assert "operation: istft" in text and "torch" in text and "image: x" in text


def test_a_clean_log_writes_nothing(tmp_path):
    assert diagnostics.write_report(tmp_path, {"engine": "INFO ready\nINFO served 10 requests\n"}, {}) is None
    assert not (tmp_path / diagnostics.DIAGNOSTIC_FILE).exists()
