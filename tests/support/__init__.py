"""Real protocol peers and helpers the tests share."""
