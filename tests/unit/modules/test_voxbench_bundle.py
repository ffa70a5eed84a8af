"""voxbench_bundle: the controller-side bundle cache and a build that fails with pip's words
(a full build downloads every wheel from the package index: the integration tests' part)."""

from __future__ import annotations

import platform
import sys

from bench_py.hosts.bundle import HostPlatform, bundle_digest
from bench_py.version import version_id
from tests.unit.modules.utils import fail_module, load_module, run_module, undocumented

bundle_module = load_module("voxbench_bundle")
HOST = {"python_version": "3.12", "machine": "aarch64", "glibc": "2.39"}


def bundle_args(project, cache, **options) -> dict:
    return {"project_dir": str(project), "cache_dir": str(cache), **HOST, **options}


def small_project(root):
    """A project checkout with what travels besides the wheel (a role) and what builds it."""
    (root / "roles" / "r" / "tasks").mkdir(parents=True)
    (root / "roles" / "r" / "tasks" / "main.yml").write_text("---\n[]\n")
    (root / "bench_py").mkdir()
    (root / "bench_py" / "__init__.py").write_text("")
    (root / "README.md").write_text("# voxbench\n")
    (root / "pyproject.toml").write_text('[project]\nname = "voxbench"\nversion = "0.1.0"\n')
    return root


def test_machine_is_one_of_the_architectures_bundles_are_built_for(tmp_path):
    result = fail_module(bundle_module, bundle_args(tmp_path, tmp_path / "cache", machine="armv7l"))
    assert result["msg"] == "value of machine must be one of: x86_64, aarch64, got: armv7l"
    assert not (tmp_path / "cache").exists()


def test_the_host_platform_is_required(tmp_path):
    result = fail_module(bundle_module, {"project_dir": str(tmp_path), "cache_dir": str(tmp_path)})
    assert result["msg"] == "missing required arguments: glibc, machine, python_version"


def test_a_cached_bundle_for_this_project_and_platform_is_reused_also_in_check_mode(tmp_path):
    project = small_project(tmp_path / "project")
    cache = tmp_path / "cache"
    cache.mkdir()
    platform_ = HostPlatform(HOST["python_version"], HOST["machine"], HOST["glibc"])
    cached = cache / f"voxbench-{bundle_digest(project)}-{platform_.tag}.tar"
    cached.write_bytes(b"a bundle built earlier")
    for check_mode in (True, False):
        result = run_module(bundle_module, bundle_args(project, cache), check_mode=check_mode)
        assert result["changed"] is False
        assert result["path"] == str(cached)
        # voxbench_runtime compares the host's installed version with this one.
        assert result["manifest"] == {
            "version_id": version_id(),
            "platform": "cp312-aarch64-glibc2.39",
            "python": "3.12",
            "machine": "aarch64",
        }
        assert undocumented(bundle_module, result) == []
    assert cached.read_bytes() == b"a bundle built earlier"


def test_a_wheel_that_does_not_build_fails_with_pips_words_and_leaves_no_bundle(tmp_path):
    project = small_project(tmp_path / "project")
    (project / "pyproject.toml").write_text("[project\nname = ")
    cache = tmp_path / "cache"
    machine = platform.machine() if platform.machine() in ("x86_64", "aarch64") else "x86_64"
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    result = fail_module(bundle_module, bundle_args(project, cache, machine=machine, python_version=python))
    assert result["msg"].startswith("building the voxbench wheel failed:\n")
    assert "TOMLDecodeError" in result["msg"]  # the last lines pip wrote, not a paraphrase
    assert not list(cache.glob("*.tar")) and not list(cache.glob("*.partial"))


def test_a_project_dir_that_is_not_the_project_fails_saying_so(tmp_path):
    result = fail_module(bundle_module, bundle_args(tmp_path / "elsewhere", tmp_path / "cache"))
    assert result["msg"] == f"{tmp_path / 'elsewhere'} is not the voxbench project (no pyproject.toml there)"
