"""Sources that feed the engine: where notifications come from (issue 9: Dataverse change tracking)."""
