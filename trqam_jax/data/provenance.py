"""A dataset's provenance record, the JSON next to its files that the generator and fetch_data
write, and the label it gives the data ("official" or "generated")."""

import json
import os


def provenance_path(directory: str, dataset_name: str) -> str:
    """Where the generator and fetch_data write, and the loader looks for, the provenance JSON."""
    return os.path.join(directory, f"{dataset_name}-provenance.json")


def read_provenance(directory: str, dataset_name: str) -> dict | None:
    """The provenance JSON next to the files (the generator's or fetch_data's), or None."""
    path = provenance_path(directory, dataset_name)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        # Its presence alone marks the data as generated; keep the label even if unreadable.
        return {"unreadable": path}


def data_source_of(record: dict | None) -> str:
    """The label of a dataset from its provenance record (`read_provenance`).

    Args:
      record: dict | None, the provenance JSON next to the files, or None.
    Returns:
      str: "official" without a record (files put there by hand or by ogbench) or with the
      record of `trqam_jax.data.fetch` (data_source "official"); "generated" for any other record,
      an unreadable one included, so that generated data is never labelled official.
    """
    return "official" if record is None or record.get("data_source") == "official" else "generated"
