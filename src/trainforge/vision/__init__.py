"""Images through the lifecycle: loading (images.py), augmentation (augment.py), processors (processor.py),
image classification evaluation (evaluate.py), image–text metrics (retrieval.py) and CLIP (clip.py).

The tasks that use them live in trainforge/tasks/ (image_classification.py, clip.py); nothing here imports
torch or transformers at module level, so `trainforge --help` stays fast. An audio package can follow the
same split: a loader that returns (value, reason) and never raises on bad input, a processor built with
explicit sizes, a task that asks for them.
"""
