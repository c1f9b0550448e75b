"""Tasks: one object per kind of model (tasks/base.py has the protocol and the picture).

TASKS maps the name written in model/trainforge.json to the class; `task_for(model_dir)` is how eval,
compress and serve learn what a saved model is for. A new kind of model registers here.
"""

from __future__ import annotations

from pathlib import Path

from trainforge.tasks.audio_classification import AudioClassificationTask
from trainforge.tasks.base import EvalJob, ModelSpec, Task
from trainforge.tasks.causal_lm import CausalLMTask
from trainforge.tasks.classification import ClassificationTask
from trainforge.tasks.clip import ClipTask
from trainforge.tasks.dpo import DPOTask
from trainforge.tasks.grpo import GRPOTask
from trainforge.tasks.image_classification import ImageClassificationTask
from trainforge.tasks.info import ModelInfo, read_model_info, write_model_info
from trainforge.tasks.sft import SFTTask

TASKS: dict[str, type] = {
    ClassificationTask.name: ClassificationTask,
    CausalLMTask.name: CausalLMTask,
    SFTTask.name: SFTTask,
    GRPOTask.name: GRPOTask,
    DPOTask.name: DPOTask,
    ImageClassificationTask.name: ImageClassificationTask,
    ClipTask.name: ClipTask,
    AudioClassificationTask.name: AudioClassificationTask,
}

__all__ = ["TASKS", "Task", "ModelSpec", "EvalJob", "ModelInfo", "ClassificationTask", "CausalLMTask", "SFTTask", "DPOTask",
           "ImageClassificationTask", "ClipTask", "AudioClassificationTask",
           "register_task", "task_from_info", "task_for", "read_model_info", "write_model_info"]


def register_task(cls: type) -> type:
    """Add a kind of model (a class following tasks.base.Task with a `from_info` classmethod)."""
    TASKS[cls.name] = cls
    return cls


def task_from_info(info: ModelInfo, where: Path | str = "model/") -> Task:
    cls = TASKS.get(info.task)
    if cls is None:
        raise_unknown(info.task, where)
    return cls.from_info(info)


def task_for(model_dir: Path) -> tuple[Task, ModelInfo]:
    """The task a saved model was trained for, and its description (model/trainforge.json)."""
    info = read_model_info(Path(model_dir))
    return task_from_info(info, model_dir), info


def raise_unknown(name: str, where) -> None:
    from trainforge.errors import UserError

    raise UserError(f"{where}: task {name!r} is not one this trainforge knows ({', '.join(TASKS)}); upgrade trainforge "
                    f"or re-run the stage that wrote it")
