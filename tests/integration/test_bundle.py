"""What setup.yml's bundle carries: everything the host-side run imports, for the host's platform
— resolved here for titan's (aarch64, Python 3.12) so a gap shows before anyone stands at a DGX."""

from __future__ import annotations

import zipfile

from bench_py.hosts.bundle import DROP_INS, HostPlatform, _drop_in_wheel, resolve
from bench_py.hosts.closure import closure
from tests.helpers import ROOT


def test_the_closure_follows_lazy_imports_to_the_scorer():
    """The preset sweep imports resemblyzer inside a function: the closure still names it."""
    modules, packages = closure()
    assert "bench_py.judge.similarity" in modules and "bench_py.run.phases" in modules
    assert {"resemblyzer", "torch", "numpy", "httpx", "docker", "huggingface_hub"} <= set(packages)
    assert "bench_py.voice.extract" not in modules  # Phase A0 runs on the controller


def test_the_bundle_for_titans_platform_resolves_wheels_only():
    """aarch64, CPython 3.12 (DGX OS 7), manylinux up to glibc 2.39: every requirement has a wheel
    or a drop-in. Resolution only (pip install --dry-run): nothing is installed here."""
    resolved = {entry.split("==")[0].lower().replace("_", "-"): entry.split("==")[1] for entry in resolve(
        ROOT, HostPlatform("3.12", "aarch64", "2.39"), ROOT / "constraints.txt"
    )}  # fmt: skip
    for name in ("voxbench", "resemblyzer", "torch", "librosa", "pydantic-core", "numpy", "ansible-core"):
        assert name in resolved, name
    assert resolved["webrtcvad-wheels"] and resolved["webrtcvad"] == "2.0.10"  # the drop-in and what provides it
    assert resolved["torch"] == "2.13.0"
    assert "pocketsphinx" not in resolved  # the ASR proxy is the controller's (it has no aarch64 wheel)


def test_a_drop_in_wheel_says_what_provides_its_module(tmp_path):
    for name, provider in DROP_INS.items():
        wheel = _drop_in_wheel(tmp_path, name, "1.0", provider, "9.9" if provider else None)
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            metadata = archive.read(f"{name}-1.0.dist-info/METADATA").decode()
        assert all(n.startswith(f"{name}-1.0.dist-info/") for n in names)  # metadata only: no module shadowed
        assert f"Name: {name}" in metadata and "voxbench drop-in" in metadata
        assert (f"Requires-Dist: {provider}==9.9" in metadata) if provider else ("Requires-Dist" not in metadata)
    first = _drop_in_wheel(tmp_path, "typing", "1.0", None, None).read_bytes()
    assert _drop_in_wheel(tmp_path, "typing", "1.0", None, None).read_bytes() == first  # deterministic bytes
