"""Reading a scan's results.json as a user's script would: the baseline and the recommendation
are references into ``trials`` (schema version 4)."""


def chosen(data: dict, which: str) -> dict:
    """The trial that ``data[which]`` ("baseline" or "recommendation") refers to."""
    return data["trials"][data[which]["trial"]]
