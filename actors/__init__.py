"""Ray actors around Herald's core: queue shards, channel pools, supervisor, provider adapters."""
