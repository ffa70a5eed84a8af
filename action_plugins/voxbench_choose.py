"""Ask for a required choice on the controller's terminal; fail with the choices when there is none.

``vars_prompt`` silently takes its default when stdin is not a terminal (CI, ansible-runner),
which would start a benchmark on a production host in a mode nobody chose.
"""

from __future__ import annotations

DOCUMENTATION = r"""
action: voxbench_choose
short_description: Prompt for one of a fixed set of choices, only on a terminal
options:
  name: {description: The variable being chosen (shown in the prompt and errors)., type: str, required: true}
  choices: {description: Allowed answers., type: list, elements: str, required: true}
  default: {description: Answer taken when the user just presses Enter., type: str}
"""

RETURN = r"""
choice:
  description: The answer given (one of O(choices)).
  returned: success
  type: str
"""

from ansible.errors import AnsiblePromptNoninteractive
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):  # type: ignore[no-untyped-def]
        result = super().run(tmp, task_vars)
        name = self._task.args["name"]
        choices = [str(c) for c in self._task.args["choices"]]
        default = self._task.args.get("default")
        listing = " or ".join(choices)
        prompt = f"\n{name}? ({' / '.join(choices)})" + (f" [{default}]" if default else "") + ": "
        try:
            answer = display.prompt_until(prompt, private=False)
        except AnsiblePromptNoninteractive:
            result.update(
                failed=True,
                msg=f"{name} is required and there is no terminal to ask on: pass -e {name}=<choice> with {listing}",
            )
            return result
        text = answer.decode() if isinstance(answer, bytes) else str(answer)
        text = text.strip() or (default or "")
        if text not in choices:
            result.update(failed=True, msg=f"{name} must be {listing}, not {text!r}")
            return result
        result.update(changed=False, choice=text)
        return result
