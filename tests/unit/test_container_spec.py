"""What the candidate container is created with: the token only as a read-only file."""

from pathlib import Path

from bench_py.engines.container import LABEL_EXPIRES, LABEL_RUN, ContainerSpec


def test_token_is_a_read_only_mount_and_never_in_command_or_environment(tmp_path):
    token = tmp_path / "hf_token"
    token.write_text("hf_CANARY")
    spec = ContainerSpec(
        "BENCHMARK-VOXTRAL-HOST-20260101-000000",
        "img:tag",
        ["serve", "--port", "8091"],
        8091,
        18091,
        token,
        "/run/secrets/hf_token",
    )
    kwargs = spec.create_kwargs()
    assert kwargs["volumes"] == {str(token.resolve()): {"bind": "/run/secrets/hf_token", "mode": "ro"}}
    assert kwargs["environment"] == {"HF_TOKEN_PATH": "/run/secrets/hf_token"}
    assert "hf_CANARY" not in repr(kwargs)
    assert kwargs["auto_remove"] is False
    assert kwargs["ports"] == {"8091/tcp": ("127.0.0.1", 18091)}
    assert kwargs["labels"][LABEL_RUN] == spec.run_id and LABEL_EXPIRES in kwargs["labels"]
    assert Path(kwargs["volumes"].popitem()[0]).is_absolute()
