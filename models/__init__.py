"""Models (text, relation extraction, vision), each family with a ``tiny_*`` variant."""
