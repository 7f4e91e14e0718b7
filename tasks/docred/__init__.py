"""DocRED document-level relation extraction: scorer (and, later, the task plugin)."""
