"""Export profiles: model and validation, destination secrets, live checks, fan-out, operations."""
