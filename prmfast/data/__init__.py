"""Tasks and datasets: the Task type, loaders, the synthetic suite and its oracle, prompt formats."""
from prmfast.data.jsonl import DataError
from prmfast.data.load import load_tasks, split_tasks
from prmfast.data.prompts import build_program, extract_program, format_chat_prompt
from prmfast.data.task import Task, horizon_bucket
from prmfast.data.validate import ValidationReport, drop_failing_references, validate_tasks

__all__ = ["DataError", "Task", "ValidationReport", "build_program", "drop_failing_references",
           "extract_program", "format_chat_prompt", "horizon_bucket", "load_tasks", "split_tasks",
           "validate_tasks"]
