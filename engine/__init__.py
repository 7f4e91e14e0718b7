"""The engine behind ``run_task.py``: the sweep plan, the training recipe and the outputs.

``run_task.py`` keeps the loop itself (read top to bottom in one sitting); what it calls lives
here: ``plan`` (validate every cell and compute its run identity before training), ``recipe``
(optimizer, schedule, EMA), ``outputs`` (environment, results and scores files, full-disk
errors, the leaderboard refresh).
"""
