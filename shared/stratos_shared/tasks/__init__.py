"""Tasks: loading, prompting, answer extraction, grading and worked traces.

Shipped kinds: ``math``, ``mahjong-winning-tiles``, ``custom-rules`` and ``jsonl``
(user data), each registered by its own module (`kinds.register_kind`). Build one with :func:`build_task`.
"""

from stratos_shared.tasks.base import ANSWER_MARKER, ChatMessage, Example, Grade, StepCheck, Task
from stratos_shared.tasks.errors import TaskConfigError, TaskDataError, TaskError
from stratos_shared.tasks.registry import TASK_KINDS, build_task

__all__ = [
    "ANSWER_MARKER",
    "TASK_KINDS",
    "ChatMessage",
    "Example",
    "Grade",
    "StepCheck",
    "Task",
    "TaskConfigError",
    "TaskDataError",
    "TaskError",
    "build_task",
]
