"""The composition root: starts Ray, the capture peers, the Supervisor and Serve; the ``herald`` CLI."""
