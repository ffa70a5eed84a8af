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
  contains:
    voxbench_extraction:
      description: What the extraction found (extract.yml shows it; the Python API returns it).
      type: dict
      contains:
        syntax: {description: The subtitles' file syntax, C(webvtt) or C(srt)., type: str}
        format:
          description: How the subtitles say who speaks (voice spans, dash turns, auto-captions, none).
          type: str
        format_reason: {description: Why that format was recognised., type: str}
        mode:
          description: How the target was found; C(choose-cluster) when nobody was named and the clusters are listed
            to choose from.
          type: str
        candidates:
          description: The ranked clips cut into O(out_dir), best first.
          type: list
          elements: dict
          contains:
            file: {description: The clip in O(out_dir)., type: str}
        clusters:
          description: The speaker clusters found (a representative clip each), when no speaker was named.
          type: list
          elements: dict
          contains:
            file:
              description: The cluster's representative clip in O(out_dir) (null when none could be cut).
              type: str
        rejected: {description: How many segments were rejected., type: int}
        skipped_cues: {description: Subtitle cues skipped, each with its line and why., type: list, elements: dict}
        timings_s: {description: Seconds spent per stage., type: dict}
        summary: {description: Asked, produced, single and joined, rejections by reason, why fewer, advice., type: dict}
        summary_lines: {description: The summary as lines a person reads., type: list, elements: str}
        out_dir: {description: Where the clips and candidates.json are., type: str}
        confirmed:
          description: The allowlist entry written with O(confirm_rank) (null without it).
          type: dict
          contains:
            path:
              description: The confirmed clip in O(references_dir) (extract.yml copies it to the incumbent).
              type: str
            file: {description: Its file name in the references store., type: str}
            sha256: {description: Its hash, checked before every run., type: str}
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
