"""Quality of a generated patch set: measures.py (FD, precision/recall, diversity,
memorisation), section.py (the report section), stage.py (the workdir stage)."""
