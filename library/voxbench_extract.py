#!/usr/bin/python
"""Phase A0: rank a speaker's reference clips in a film, optionally confirm one."""

from __future__ import annotations

DOCUMENTATION = r"""
module: voxbench_extract
short_description: Rank reference clips of one speaker in a film with its subtitles (WebVTT or SRT)
description:
  - Detects the subtitles' format (voice spans, dash turns, yt-dlp auto-captions, cues cut across turns,
    none) and says why, segments the speech, ranks 5-15 s segments of the target speaker by speaker
    similarity and quality (joining her cleanest short lines into references when too few single
    stretches reach I(min_seconds)), and cuts the best into I(out_dir). Returns them, with a summary
    that says why fewer came out and what to try, as the fact C(voxbench_extraction).
  - With I(confirm_rank), the chosen clip enters the references allowlist (a listener has confirmed it).
options:
  film: {description: The video or audio file., type: path, required: true}
  subtitles: {description: Its subtitles (WebVTT or SRT)., type: path, required: true}
  out_dir: {description: Where clips and candidates.json go; nothing is written elsewhere., type: path, required: true}
  speaker: {description: The target's name in voice spans., type: str}
  example: {description: A clip of the target voice (subtitles that name nobody)., type: path}
  cluster: {description: The speaker cluster picked after listening to the representatives., type: int}
  top: {description: How many clips to cut., type: int, default: 5}
  min_seconds:
    description: The shortest single stretch offered (1-15 s); short lines are joined when too few reach it.
    type: float
    default: 5.0
  confirm_rank: {description: Confirm this candidate into the references store., type: int}
  reference_name: {description: The confirmed clip's name in the allowlist., type: str}
  references_dir: {description: The references store (its metadata.json is merged into, never replaced)., type: path}
  confirmed_by: {description: Who listened and confirmed., type: str}
attributes:
  check_mode: {support: none}
  diff_mode: {support: none}
  idempotent: {support: partial, details: the ranking is deterministic; confirmation rewrites the entry}
author: voxbench maintainers
"""

EXAMPLES = r"""
- name: Rank Samantha's clips
  voxbench_extract:
    film: ~/films/her.mp4
    subtitles: ~/films/her.en.vtt
    out_dir: runs/extract-her
    speaker: Samantha
"""

RETURN = r"""
ansible_facts:
  description: >-
    C(voxbench_extraction) with the syntax and format, its reason, the ranked candidates (or clusters),
    timings, and the summary (asked, produced, single and joined, rejections counted by reason, why fewer, advice).
  returned: success
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "film": {"type": "path", "required": True},
            "subtitles": {"type": "path", "required": True},
            "out_dir": {"type": "path", "required": True},
            "speaker": {"type": "str"},
            "example": {"type": "path"},
            "cluster": {"type": "int"},
            "top": {"type": "int", "default": 5},
            "min_seconds": {"type": "float", "default": 5.0},
            "confirm_rank": {"type": "int"},
            "reference_name": {"type": "str"},
            "references_dir": {"type": "path"},
            "confirmed_by": {"type": "str"},
        },
        required_by={"confirm_rank": ("reference_name", "references_dir")},
    )
    from pathlib import Path

    from bench_py.voice import clips, confirm, references, vtt

    p = module.params
    try:
        facts = confirm.extract_and_confirm(
            Path(p["film"]), Path(p["subtitles"]), Path(p["out_dir"]), speaker=p["speaker"],
            example=Path(p["example"]) if p["example"] else None, cluster=p["cluster"], top=p["top"],
            min_seconds=p["min_seconds"], confirm_rank=p["confirm_rank"], reference_name=p["reference_name"],
            references_dir=Path(p["references_dir"]) if p["references_dir"] else None,
            confirmed_by=p["confirmed_by"],
        )  # fmt: skip
    except (clips.ExtractError, vtt.VttError, references.ReferenceError) as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=True, ansible_facts={"voxbench_extraction": facts})


if __name__ == "__main__":
    main()
