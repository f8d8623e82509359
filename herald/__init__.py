"""Herald: notification delivery core (pure Python, no Ray): models, queue, templates, policies."""
