"""One file per schema change, applied in order (each names its ``down_revision``)."""
