"""Task plugins and corpus-level metrics.

``import tasks`` imports only the Task contract (``tasks.base``): each built-in task is declared
by name and imported on first use (``create_task("coco")`` imports the image task, and with it
torchvision; ``create_task("synthetic")`` does not). Add a built-in here, one line, next to its
``@TASKS.register(name)``; ``tests/test_core/test_registry.py`` checks that the two agree.
"""

from tasks.base import SPLITS, TASKS, Task, create_task

# name -> "module:attr" of every built-in task; the module's decorator replaces the placeholder
BUILTIN_TASKS = {
    "synthetic": "tasks.synthetic.task:SyntheticTask",
    "text_multilabel": "tasks.text_classification.task:TextMultilabelTask",
    "aapd": "tasks.text_classification.task:AAPDTask",
    "docred": "tasks.docred.task:DocREDTask",
    "docred_ner": "tasks.ner.task:DocREDNERTask",
    "token_ner": "tasks.ner.task:TokenNERTask",
    "image_multilabel": "tasks.image_classification.task:ImageMultilabelTask",
    "coco": "tasks.image_classification.task:CocoTask",
    "nus_wide": "tasks.image_classification.task:NusWideTask",
    "voc": "tasks.image_classification.task:VocTask",
}
for _name, _target in BUILTIN_TASKS.items():
    TASKS.add_lazy(_name, _target)
del _name, _target

__all__ = ["BUILTIN_TASKS", "SPLITS", "TASKS", "Task", "create_task"]
