"""MLLB's neutral bottom layer: what losses/, models/, tasks/ and leaderboard/ all share.

``registry`` (the Registry class and pretrained-path resolution), ``io`` (atomic writes),
``errors`` (UserError), ``runconfig`` (the run configuration). It imports none of the
packages above it, so each of them may import it without creating a cycle.
"""
