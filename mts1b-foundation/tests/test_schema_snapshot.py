from mts1b_foundation.schema import export_schemas, load_snapshot, wire_models


def test_schemas_match_committed_snapshot() -> None:
    """A wire change must be deliberate: bump SCHEMA_VERSION and run
    ``python -m mts1b_foundation.schema --write`` to refresh the snapshot."""
    current, committed = export_schemas(), load_snapshot()
    changed = sorted(k for k in current.keys() | committed.keys()
                     if current.get(k) != committed.get(k))
    assert changed == [], f"wire schemas changed without a snapshot update: {changed}"


def test_every_wire_model_is_frozen_and_forbids_extras() -> None:
    models = wire_models()
    assert len(models) >= 30
    for name, model in models.items():
        assert model.model_config.get("frozen") is True, name
        assert model.model_config.get("extra") == "forbid", name
        assert "schema_version" in model.model_fields, name
