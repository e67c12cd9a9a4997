"""What every Backstop process shares: records, store, engine, integrations."""
